"""ORPO (2403.07691): the real ORPOTrainer on one batch of preference pairs written by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paperrl.verify.answers import answer_logp, sequence_nll
from paperrl.verify.scenario import Check, compare, grads, objective_values, real_trainer, scenario_plan


def ref_orpo_loss(mean_w, mean_l, nll, lam: float) -> torch.Tensor:
    """ORPO Eq. 6-7: L_SFT + lambda E[-log sigma(log odds(y_w|x) / odds(y_l|x))], odds(y|x) = P / (1 - P) with
    P(y|x) = exp(1/|y| sum_t log P(y_t|x, y_<t)) (mean_w, mean_l: the answers' mean token log-probabilities)."""
    log_odds = (mean_w - mean_l) - (torch.log1p(-torch.exp(mean_w)) - torch.log1p(-torch.exp(mean_l)))
    return nll + lam * (-F.logsigmoid(log_odds)).mean()


PAIRS = [("12+7=", "19", "9"), ("3+4=", "7", "71"), ("25+25=", "50", "5"), ("9+9=", "18", "108"),
         ("31+12=", "43", "34"), ("8+1=", "9", "10"), ("47+38=", "85", "815"), ("6+60=", "66", "6")]


def verify_orpo(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(PAIRS))
    lam = objective_values(plan.recipe)["orpo"]["lam"]
    trainer = real_trainer(plan, rows=[dict(zip(("prompt", "chosen", "rejected"), p)) for p in PAIRS])
    model, tok = trainer.model, trainer.processing_class
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    theirs = trainer.compute_loss(model, batch)
    their_grad = grads(model, theirs)

    def mean_logp(prompt, answer):
        total, n = answer_logp(model, tok, prompt, answer)
        return total / n

    mean_w = torch.stack([mean_logp(p, c) for p, c, _ in PAIRS])
    mean_l = torch.stack([mean_logp(p, r) for p, _, r in PAIRS])
    # L_SFT as the authors' code computes it (xfactlab/orpo src/orpo_trainer.py): the causal-LM loss of prompt +
    # chosen response, averaged over the batch's tokens
    nll = sequence_nll(model, tok, [p + c for p, c, _ in PAIRS])
    ours = ref_orpo_loss(mean_w, mean_l, nll, lam)
    eq = plan.recipe.objective.orpo.source
    return [compare("ORPO loss (SFT + lambda x odds-ratio term)", eq, ours, theirs),
            compare("gradient of the ORPO loss, all parameters", eq, grads(model, ours), their_grad)]
