"""Preference losses (DPO's family, CPO's): the real trainer on one batch of pairs written by hand."""

from __future__ import annotations

import torch

from paperrl.verify.references import ref_desensitised_logps, ref_preference_loss, ref_wpo_weights
from paperrl.verify.scenario import Check, compare, grads, objective_values, perturb, real_trainer, scenario_plan


def _token_logps(model, input_ids, attention_mask):
    """log pi of each next token, and log pi over the vocabulary at each position."""
    logp = torch.log_softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float(), -1)
    return logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1), logp


PREFERENCE_PAIRS = [("12+7=", "19", "9"), ("3+4=", "7", "71"), ("25+25=", "50", "5"), ("9+9=", "18", "108"),
                    ("31+12=", "43", "34"), ("8+1=", "9", "10"), ("47+38=", "85", "815"), ("6+60=", "66", "6")]


def verify_preference(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(PREFERENCE_PAIRS))
    preference = objective_values(plan.recipe)["preference"]
    options = preference if isinstance(preference, dict) else {}
    trainer = real_trainer(plan, rows=[dict(zip(("prompt", "chosen", "rejected"), p)) for p in PREFERENCE_PAIRS])
    perturb(trainer.model)  # policy != reference
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model = trainer.model
    theirs = trainer.compute_loss(model, batch)
    their_grad = grads(model, theirs)
    weight = 1.0
    if "input_ids" in batch:  # DPO: chosen rows first, then rejected
        ids, att, mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"][:, 1:].float()
        token, logp = _token_logps(model, ids, att)
        with torch.no_grad():
            ref_token, _ = _token_logps(trainer.ref_model, ids, att)
        pol, ref = (ref_desensitised_logps(t, mask, options.get("ld_alpha", 1.0)) for t in (token, ref_token))
        n, lens = ids.shape[0] // 2, mask.sum(-1)
        parts = (pol[:n], pol[n:], ref[:n], ref[n:], lens[:n], lens[n:])
        if options.get("weighting"):
            w = ref_wpo_weights(token, logp, mask)
            weight = w[:n] * w[n:]
    else:  # CPO: separate chosen/rejected tensors, labels -100 on the prompt
        def side(key):
            token, _ = _token_logps(model, batch[f"{key}_input_ids"], batch[f"{key}_attention_mask"])
            mask = (batch[f"{key}_labels"][:, 1:] != -100).float()
            return (token * mask).sum(-1), mask.sum(-1)

        (pw, lw), (pl, ll) = side("chosen"), side("rejected")
        parts = (pw, pl, torch.zeros_like(pw), torch.zeros_like(pl), lw, ll)
    ours = ref_preference_loss(*parts, preference, weight)
    our_grad = grads(model, ours)
    eq = plan.recipe.objective.preference.source
    return [compare("preference loss", eq, ours, theirs), compare("gradient of the preference loss", eq, our_grad,
                                                                      their_grad)]
