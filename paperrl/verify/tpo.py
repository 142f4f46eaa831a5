"""TPO / TPO-L (2405.16681): the real TPOTrainer on one batch of triples written by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paperrl.verify.answers import answer_logp
from paperrl.verify.scenario import Check, compare, grads, objective_values, real_trainer, scenario_plan


def ref_tpo_loss(logp_w, logp_l, n_w, n_l, nll_gold, beta: float, alpha: float, gamma: float | None = None):
    """TPO (authors' code, tpo_loss + tpo_alpha * nll_loss): -log sigma(beta log pi(y_w|x) - beta log pi(y_l|x))
    + alpha NLL(y_gold|x), no reference model. TPO-L: the log-likelihoods divided by the lengths, and the target
    margin: -log sigma(beta/|y_w| log pi(y_w|x) - beta/|y_l| log pi(y_l|x) - gamma) + alpha NLL(y_gold|x)."""
    if gamma is None:
        preference = -F.logsigmoid(beta * (logp_w - logp_l))
    else:
        preference = -F.logsigmoid(beta * (logp_w / n_w - logp_l / n_l) - gamma)
    return preference.mean() + alpha * nll_gold


# (prompt, gold, chosen, rejected): gold > chosen > rejected, answers of different lengths
TRIPLES = [("12+7=", "19", "18", "9"), ("3+4=", "7", "8", "71"), ("25+25=", "50", "51", "5"),
           ("9+9=", "18", "17", "108"), ("31+12=", "43", "41", "34"), ("8+1=", "9", "10", "19"),
           ("47+38=", "85", "84", "815"), ("6+60=", "66", "64", "6")]


def verify_tpo(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(TRIPLES))
    t = objective_values(plan.recipe)["tpo"]
    rows = [{"prompt": p, "reference": g, "chosen": c, "rejected": r} for p, g, c, r in TRIPLES]
    trainer = real_trainer(plan, rows=rows)
    model, tok = trainer.model, trainer.processing_class
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    theirs = trainer.compute_loss(model, batch)
    their_grad = grads(model, theirs)

    w = [answer_logp(model, tok, p, c) for p, _, c, _ in TRIPLES]
    lose = [answer_logp(model, tok, p, r) for p, _, _, r in TRIPLES]
    gold = [answer_logp(model, tok, p, g) for p, g, _, _ in TRIPLES]
    nll_gold = -sum(x for x, _ in gold) / sum(n for _, n in gold)  # per token over the batch's gold answers
    ours = ref_tpo_loss(torch.stack([x for x, _ in w]), torch.stack([x for x, _ in lose]),
                        torch.tensor([float(n) for _, n in w]), torch.tensor([float(n) for _, n in lose]),
                        nll_gold, t["beta"], t["alpha"], t.get("gamma"))
    eq = plan.recipe.objective.tpo.source
    what = "TPO-L" if t.get("gamma") is not None else "TPO"
    return [compare(f"{what} loss (preference term + alpha x gold NLL)", eq, ours, theirs),
            compare(f"gradient of the {what} loss, all parameters", eq, grads(model, ours), their_grad)]
