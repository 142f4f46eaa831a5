"""Reward modelling (Llama 2's margin loss, the centring term of Helping or Herding): the real RewardTrainer on one
batch of preference pairs written by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paperrl.verify.scenario import Check, compare, grads, objective_values, real_trainer, scenario_plan


def ref_reward_loss(r_chosen, r_rejected, margin=None, center: float | None = None) -> torch.Tensor:
    """Llama 2 Eq. 2: -log sigma(r(x, y_c) - r(x, y_r) - m(r)), Eq. 1 without a margin; with the centring term
    of Helping or Herding (Eq. 2 as the Paper Index quotes it): + eta (r(x, y+) + r(x, y-))^2. Mean over pairs."""
    m = torch.zeros_like(r_chosen) if margin is None else margin
    loss = -F.logsigmoid(r_chosen - r_rejected - m).mean()
    if center:
        loss = loss + center * ((r_chosen + r_rejected) ** 2).mean()
    return loss


def ref_reward(model, tokenizer, text: str) -> torch.Tensor:
    """r(x, y): the regression head on the last token's hidden state (Llama 2 §3.2.2: the LM's classification head
    replaced by a regression head outputting a scalar), text = prompt + answer + EOS."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
    return model.score(hidden).squeeze(-1)


# One batch, written by hand: each of the four ratings of Llama 2 §3.2.1 twice, answers of different lengths.
PAIRS = [("12+7=", "19", "9", "significantly better"), ("3+4=", "7", "71", "better"),
         ("25+25=", "50", "5", "slightly better"), ("9+9=", "18", "108", "negligibly better / unsure"),
         ("31+12=", "43", "34", "significantly better"), ("8+1=", "9", "10", "better"),
         ("47+38=", "85", "815", "slightly better"), ("6+60=", "66", "6", "negligibly better / unsure")]
SCORE_SCALE = 20.0  # the new score head's rewards are near 0; scaled up, (r+ + r-)^2 is far from 0 and the centring shows


def verify_reward(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(PAIRS))
    objective = objective_values(plan.recipe)["reward_model"]
    margins, center = objective.get("margins"), objective.get("center")
    rows = [{"prompt": p, "chosen": c, "rejected": r, **({"rating": g} if margins else {})} for p, c, r, g in PAIRS]
    trainer = real_trainer(plan, rows=rows)
    model, tok = trainer.model, trainer.processing_class
    with torch.no_grad():
        model.score.weight.mul_(SCORE_SCALE)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    theirs = trainer.compute_loss(model, dict(batch))
    their_grad = grads(model, theirs)

    r_c = torch.stack([ref_reward(model, tok, p + c) for p, c, _, _ in PAIRS])
    r_r = torch.stack([ref_reward(model, tok, p + r) for p, _, r, _ in PAIRS])
    m = torch.tensor([float(margins[g]) for *_, g in PAIRS]) if margins else None
    ours = ref_reward_loss(r_c, r_r, m, center)
    eq = plan.recipe.objective.reward_model.source
    note = (f"rewards in [{min(r_c.min(), r_r.min()).item():.2f}, {max(r_c.max(), r_r.max()).item():.2f}]"
            + (f"; margins {sorted(set(m.tolist()))}" if m is not None else "") + (f"; eta {center}" if center else ""))
    return [compare("reward-model loss", eq, ours, theirs, note=note),
            compare("gradient of the reward-model loss, all parameters", eq, grads(model, ours), their_grad)]
