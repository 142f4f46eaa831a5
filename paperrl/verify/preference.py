"""Preference losses (DPO's family, CPO's): the real trainer on one batch of pairs written by hand."""

from __future__ import annotations

import torch

from paperrl.verify.references import (ref_desensitised_logps, ref_preference_loss, ref_reference_updates,
                                       ref_wpo_weights)
from paperrl.verify.scenario import Check, compare, grads, objective_values, perturb, real_trainer, scenario_plan

# Terms of a paper's objective that TRL 1.16 computes differently, and knowingly so: the term as TRL computes it
# (checked exactly with the rest of the loss), and the recipe's `deviations` key that bounds the difference.
KNOWN_DEVIATIONS = {
    "bco_pair": ({"reward_shift": False}, "bco_reward_shift",
                 "BCO reward shift delta, which TRL 1.16 leaves out"),
    "nll_seq": ({"loss": "sft"}, "sft_normalisation",
                "NLL over each chosen response's length (TRL: over all chosen tokens of the batch)"),
}


def _trl_form(term: dict) -> dict | None:
    """The term as TRL 1.16 computes it, where that differs from the paper's (None where it does not)."""
    known = KNOWN_DEVIATIONS.get(term["loss"])
    if known is None or (term["loss"] == "bco_pair" and term.get("reward_shift") is False):
        return None
    return {**term, **known[0]}


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
    parts, weight = _paper_inputs(plan, trainer, batch, options)
    terms = preference if isinstance(preference, list) else [preference]
    trl_forms = [_trl_form(t) or t for t in terms]
    as_trl = trl_forms if isinstance(preference, list) else trl_forms[0]
    ours = ref_preference_loss(*parts, as_trl, weight)
    our_grad = grads(model, ours)
    eq = plan.recipe.objective.preference.source
    note = "; ".join(f"{KNOWN_DEVIATIONS[t['loss']][2]}: in TRL's form here, measured below" for t in terms
                     if _trl_form(t) is not None)
    checks = [compare("preference loss", eq, ours, theirs, note=note),
              compare("gradient of the preference loss", eq, our_grad, their_grad, note=note)]
    checks += _deviation_checks(plan, trainer, batch, options, terms, eq)
    if "reference_update" in objective_values(plan.recipe):
        checks += verify_reference_update(recipe_name, sets)
    return checks


def _paper_inputs(plan, trainer, batch, options):
    """The pairs' log-likelihoods under the policy and the reference, and their lengths, computed here (a fresh
    graph each call); and WPO's pair weights."""
    model = trainer.model
    weight = 1.0
    if "input_ids" in batch:  # DPO: chosen rows first, then rejected
        ids, att, mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"][:, 1:].float()
        token, logp = _token_logps(model, ids, att)
        with torch.no_grad():
            free = plan.recipe.reference_free is not None and plan.recipe.reference_free.value
            ref_token = torch.zeros_like(token) if free else _token_logps(trainer.ref_model, ids, att)[0]
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
    return parts, weight


def _deviation_checks(plan, trainer, batch, options, terms, eq) -> list[Check]:
    """Each term TRL computes differently from the paper, alone (TRL's other terms switched off): its size, bounded
    by the recipe's `deviations`."""
    from paperrl.verify.policy import _bounded

    checks = []
    for i, term in enumerate(terms):
        if _trl_form(term) is None:
            continue
        _, key, name = KNOWN_DEVIATIONS[term["loss"]]
        saved = trainer.loss_types, trainer.loss_weights  # TRL's terms are in the recipe's (and objective's) order
        trainer.loss_types, trainer.loss_weights = [saved[0][i]], [1.0]
        try:
            theirs = trainer.compute_loss(trainer.model, batch)
        finally:
            trainer.loss_types, trainer.loss_weights = saved
        their_grad = grads(trainer.model, theirs)
        parts, weight = _paper_inputs(plan, trainer, batch, options)
        ours = ref_preference_loss(*parts, {**term, "weight": 1.0}, weight)
        our_grad = grads(trainer.model, ours)
        for check in (compare(f"{name}: loss", eq, ours, theirs),
                      compare(f"{name}: gradient", eq, our_grad, their_grad)):
            checks.append(_bounded(check, key, plan.recipe.deviations))
    return checks


SYNC_EVERY = 2  # the scenario's period: 4 optimizer steps hold two updates and two steps without one
SYNC_STEPS = 4


def verify_reference_update(recipe_name: str, sets: list[str]) -> list[Check]:
    """TR-DPO: the reference TRL keeps after each of 4 optimizer steps, against pi_ref <- alpha pi + (1 - alpha)
    pi_ref_prev every `every` steps (the paper's alpha; the scenario's period of 2 steps), and TRL's period against
    the paper's."""
    from transformers import TrainerCallback

    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(PREFERENCE_PAIRS))
    update = objective_values(plan.recipe)["reference_update"]
    trl_every = plan.config.get("ref_model_sync_steps", 512) if plan.config.get("sync_ref_model") else None
    plan.config.update(ref_model_sync_steps=SYNC_EVERY, gradient_accumulation_steps=1, max_steps=SYNC_STEPS,
                       learning_rate=1e-2, lr_scheduler_type="constant", warmup_steps=0, save_strategy="no",
                       logging_steps=SYNC_STEPS)
    trainer = real_trainer(plan, rows=[dict(zip(("prompt", "chosen", "rejected"), p)) for p in PREFERENCE_PAIRS])
    perturb(trainer.model)  # policy != reference from the first step
    start = [p.detach().clone() for p in trainer.ref_model.parameters()]
    seen = {"policy": [], "reference": []}

    class Snapshot(TrainerCallback):  # added after TRL's SyncRefModelCallback: runs after its update
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen["policy"].append([p.detach().clone() for p in trainer.accelerator.unwrap_model(model).parameters()])
            seen["reference"].append([p.detach().clone() for p in trainer.ref_model.parameters()])

    trainer.add_callback(Snapshot())
    trainer.train()
    ours = ref_reference_updates(start, seen["policy"], update["alpha"], SYNC_EVERY)

    def moved(refs):  # the reference's displacement from its start, after each step
        return torch.stack([torch.cat([(r - s).flatten() for r, s in zip(ref, start)]) for ref in refs])

    src = plan.recipe.objective.reference_update.source
    period = compare("reference update period (optimizer steps)", src, torch.tensor([float(update["every"])]),
                     torch.tensor([float(trl_every) if trl_every else float("inf")]),
                     note="TRL's ref_model_sync_steps, with sync_ref_model" + ("" if trl_every else ": off, no update"))
    return [compare(f"reference update pi_ref <- alpha pi + (1 - alpha) pi_ref, {SYNC_STEPS} steps", src,
                    moved(ours), moved(seen["reference"]),
                    note=f"the scenario updates every {SYNC_EVERY} steps (the period is checked on its own)"), period]
