"""Online DPO / OAIF (2402.04792): the real OnlineDPOTrainer's training step on one batch of prompts, with its
sampling replaced by completions written by hand and its annotator by a written reward table."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paperrl.verify.answers import answer_ids, answer_logp
from paperrl.verify.scenario import Check, compare, objective_values, perturb, real_trainer, scenario_plan


def ref_online_dpo_loss(pol_a, pol_b, ref_a, ref_b, reward_a, reward_b, beta: float, loss: str = "sigmoid"):
    """OAIF Algorithm 1: two responses per prompt from the current policy; the annotator's preferred one is y+ (here:
    the higher reward; a tie keeps the first sample, as TRL does); then the DAP loss on (y+, y-): DPO Eq. 7,
    -log sigma(beta h), or IPO's (h - 1/(2 beta))^2, h = log pi/pi_ref (y+) - log pi/pi_ref (y-)."""
    first = reward_a >= reward_b
    h_a, h_b = pol_a - ref_a, pol_b - ref_b
    h = torch.where(first, h_a - h_b, h_b - h_a)
    losses = -F.logsigmoid(beta * h) if loss == "sigmoid" else (h - 1 / (2 * beta)) ** 2
    return losses.mean()


# prompt -> (sample A, sample B), written by hand: A right, B right, both wrong (a tie), both right (a tie),
# answers of different lengths
SAMPLES = {"12+7=": ("19", "9"), "3+4=": ("71", "7"), "25+25=": ("5", "500"), "9+9=": ("18", "18")}
SOLUTIONS = {"12+7=": "19", "3+4=": "7", "25+25=": "50", "9+9=": "18"}


def table_reward(prompts, completions, **kwargs):
    """The annotator: 1 for the right sum, 0 otherwise."""
    return [1.0 if c.strip() == SOLUTIONS[p] else 0.0 for p, c in zip(prompts, completions)]


def verify_online_dpo(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, per_device_train_batch_size=len(SAMPLES), gradient_accumulation_steps=1)
    o = objective_values(plan.recipe)["online_preference"]
    trainer = real_trainer(plan, [table_reward], rows=[{"prompt": p} for p in SAMPLES])
    perturb(trainer.model, 0.05)  # pi != pi_ref
    tok = trainer.processing_class

    def scripted(model, prompts, images=None):  # stands in for sampling: TRL's own code does everything after it
        enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        texts = [SAMPLES[p][0] for p in prompts] + [SAMPLES[p][1] for p in prompts]
        ids = [answer_ids(tok, t) + [tok.eos_token_id] for t in texts]
        width = max(map(len, ids))
        completion_ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids])
        completion_mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
        return (enc["input_ids"].repeat(2, 1), enc["attention_mask"].repeat(2, 1), completion_ids, completion_mask,
                None)

    trainer._generate = scripted
    model = trainer.model
    model.zero_grad(set_to_none=True)
    theirs = trainer.training_step(model, next(iter(trainer.get_train_dataloader())))  # backward inside
    their_grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)

    prompts = list(SAMPLES)
    pol = [torch.stack([answer_logp(model, tok, p, SAMPLES[p][i])[0] for p in prompts]) for i in (0, 1)]
    with torch.no_grad():
        ref = [torch.stack([answer_logp(trainer.ref_model, tok, p, SAMPLES[p][i])[0] for p in prompts]) for i in (0, 1)]
    rewards = [torch.tensor(table_reward(prompts, [SAMPLES[p][i] for p in prompts])) for i in (0, 1)]
    ours = ref_online_dpo_loss(pol[0], pol[1], ref[0], ref[1], rewards[0], rewards[1], o["beta"], o["loss"])
    model.zero_grad(set_to_none=True)
    ours.backward()
    our_grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    eq = plan.recipe.objective.online_preference.source
    note = "pairs: A right, B right, both wrong (tie: A), both right (tie: A); the policy perturbed from the reference"
    return [compare("online DPO loss on the reward-ordered pairs", eq, ours, theirs, note=note),
            compare("gradient of the online DPO loss, all parameters", eq, our_grad, their_grad)]
