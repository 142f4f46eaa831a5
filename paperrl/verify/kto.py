"""KTO (2402.01306): the real KTOTrainer on one batch of labelled completions written by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paperrl.verify.answers import answer_logp
from paperrl.verify.scenario import Check, compare, grads, objective_values, perturb, real_trainer, scenario_plan


def ref_kto_z0(pol_kl: torch.Tensor, ref_kl: torch.Tensor) -> torch.Tensor:
    """KTO §4.1 Implementation: z_ref estimated as max(0, 1/m sum log pi(y'|x') / pi_ref(y'|x')) over the batch's
    mismatched pairs (x', y'), not back-propagated."""
    return torch.clamp((pol_kl - ref_kl).mean(), min=0).detach()


def ref_kto_loss(pol, ref, desirable, z0, beta: float, lambda_d: float, lambda_u: float) -> torch.Tensor:
    """KTO Eq. 7: E[w(y) (1 - v(x, y))], r = beta log pi(y|x)/pi_ref(y|x), z_ref = beta z0,
    v = sigma(r - z_ref) for desirable y, sigma(z_ref - r) for undesirable y, w = lambda_D | lambda_U."""
    r, z = beta * (pol - ref), beta * z0
    v = torch.where(desirable, torch.sigmoid(r - z), torch.sigmoid(z - r))
    w = torch.where(desirable, torch.full_like(r, lambda_d), torch.full_like(r, lambda_u))
    return (w * (1 - v)).mean()


# One batch, written by hand: 4 desirable and 4 undesirable completions of different lengths.
EXAMPLES = [("12+7=", "19", True), ("3+4=", "71", False), ("25+25=", "50", True), ("9+9=", "108", False),
            ("31+12=", "43", True), ("8+1=", "10", False), ("47+38=", "85", True), ("6+60=", "6", False)]


def mismatched(completions: list[str]) -> list[str]:
    """The unrelated output y' paired with each prompt for the KL estimate. The paper asks only for unrelated outputs
    of the same batch; TRL's choice, taken here, is the batch's completions shifted by one: (x1, y_m), (x2, y1), ..."""
    return completions[-1:] + completions[:-1]


def verify_kto(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(EXAMPLES))
    k = objective_values(plan.recipe)["kto"]
    trainer = real_trainer(plan, rows=[{"prompt": p, "completion": c, "label": d} for p, c, d in EXAMPLES])
    perturb(trainer.model)  # pi != pi_ref
    with torch.no_grad():  # and flatter (logits halved): the mismatched pairs' unlikely answers gain on any weights, z0 > 0
        trainer.model.model.norm.weight.mul_(0.5)
    model, tok = trainer.model, trainer.processing_class
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    theirs = trainer.compute_loss(model, batch)
    their_z0 = torch.tensor(trainer._metrics["train"]["kl"][-1])
    their_grad = grads(model, theirs)

    prompts, completions = [p for p, _, _ in EXAMPLES], [c for _, c, _ in EXAMPLES]
    pol = torch.stack([answer_logp(model, tok, p, c)[0] for p, c in zip(prompts, completions)])
    pol_kl = torch.stack([answer_logp(model, tok, p, c)[0] for p, c in zip(prompts, mismatched(completions))])
    with torch.no_grad():
        ref = torch.stack([answer_logp(trainer.ref_model, tok, p, c)[0] for p, c in zip(prompts, completions)])
        ref_kl = torch.stack([answer_logp(trainer.ref_model, tok, p, c)[0]
                              for p, c in zip(prompts, mismatched(completions))])
    z0 = ref_kto_z0(pol_kl, ref_kl)
    if z0 <= 0:
        raise AssertionError("verify scenario: the KL estimate is clamped to 0, so the reference point goes unchecked")
    desirable = torch.tensor([d for _, _, d in EXAMPLES])
    ours = ref_kto_loss(pol, ref, desirable, z0, k["beta"], k["lambda_d"], k["lambda_u"])
    eq = plan.recipe.objective.kto.source
    note = f"z0 = {z0.item():.3f} (> 0: the reference point moves the loss); 4 desirable, 4 undesirable"
    return [compare("KL reference point z0 (batch estimate, clamped at 0)", "KTO §4.1 Implementation", z0, their_z0),
            compare("KTO loss", eq, ours, theirs, note=note),
            compare("gradient of the KTO loss, all parameters", eq, grads(model, ours), their_grad)]
