"""REINFORCE++ w/ baseline (2501.03262) on TRL's RLOOTrainer with normalize_advantages: the paper's global advantage
normalisation, and the size of what TRL's approximation changes.

The scenario is the RLOO one (paperrl.verify.policy): the first 4 groups of hand-written completions, lengths 1 to 6,
one rollout of 16. TRL normalises one advantage per completion; the paper (Eq. 10) and the authors' OpenRLHF normalise
over every token of the batch, so a longer completion weighs more in the mean and the standard deviation.
"""

from __future__ import annotations

import torch

from paperrl.verify.policy import GROUP, MAX_LEN, REWARDS, _Scenario
from paperrl.verify.references import ref_token_logps
from paperrl.verify.scenario import Check, compare, grads, objective_values, real_trainer, scenario_plan


def ref_global_advantages(rewards, group: int, mask=None):
    """REINFORCE++ w/ baseline: A = r - mean of its group (the baseline), then A_norm = (A - mean) / std over the
    batch (Eq. 10), population statistics as the authors' OpenRLHF computes them. With `mask` (B, T) the statistics are
    over the batch's tokens, each token of a completion carrying its completion's A (the paper's Eq. 10 without KL),
    and the result is per token; without, one value per completion."""
    g = rewards.view(-1, group)
    a = (g - g.mean(-1, keepdim=True)).view(-1)
    if mask is None:
        return (a - a.mean()) / a.var(unbiased=False).sqrt()
    tokens = a.unsqueeze(1).expand_as(mask)
    n = mask.sum()
    mean = (tokens * mask).sum() / n
    var = (((tokens - mean) ** 2) * mask).sum() / n
    return (tokens - mean) / var.sqrt() * mask


def _bounded(check: Check, key: str, deviations: dict) -> Check:
    from paperrl.verify.policy import _bounded as bounded

    return bounded(check, key, deviations)


def verify_reinforce_pp(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = scenario_plan(recipe_name, sets, gradient_accumulation_steps=1, steps_per_generation=1,
                         per_device_train_batch_size=16, num_generations=GROUP, max_completion_length=MAX_LEN)
    src = plan.recipe.objective
    deviations = plan.recipe.deviations
    scenario = _Scenario()
    trainer = real_trainer(plan, [scenario])
    trainer.current_gradient_accumulation_steps = 1
    scenario.attach(trainer)
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    mask = out["completion_mask"].float()
    rewards = torch.tensor(REWARDS[:mask.shape[0]], dtype=torch.float32)
    lengths = [int(n) for n in mask.sum(-1).tolist()]
    theirs = out["advantages"]

    per_completion = compare("advantage: group-mean baseline, normalised over the batch's completions",
                             src.advantage.source, ref_global_advantages(rewards, GROUP), theirs, rel=1e-3,
                             note=f"{len(lengths)} completions; TRL's std divides by n - 1 and adds 1e-4, the "
                                  f"authors' by n: a factor sqrt(n / (n - 1)) = {(16 / 15) ** 0.5:.4f} at n = 16")
    checks = [_bounded(per_completion, "bessel_std", deviations)]
    per_token = compare("advantage: the paper's statistics over the batch's tokens (Eq. 10)", src.advantage.source,
                        ref_global_advantages(rewards, GROUP, mask), theirs.unsqueeze(1) * mask, rel=1e-3,
                        note=f"completion lengths {lengths}: TRL weighs every completion once, the paper every token")
    checks.append(_bounded(per_token, "token_statistics", deviations))

    # The policy gradient on-policy (ratio 1, no clipping): the paper's REINFORCE term with its advantages, a token
    # mean over the batch (the authors' OpenRLHF PolicyLoss), against TRL's (a mean over completions of A x their
    # summed log-probabilities).
    model, temperature = trainer.model, plan.config.get("temperature", 1.0)
    args = (out["prompt_ids"], out["prompt_mask"], out["completion_ids"], out["completion_mask"], temperature)
    logps = ref_token_logps(model, *args)
    seq_logps = (logps.detach() * mask).sum(-1)
    their_loss = trainer._compute_loss(model, {**out, "old_logps": seq_logps})
    advantages = ref_global_advantages(rewards, GROUP, mask)
    our_loss = -(advantages * ref_token_logps(model, *args) * mask).sum() / mask.sum()
    gradient = compare("policy gradient, on-policy (the paper's token mean against TRL's per-completion sum)",
                       f"{src.advantage.source}; {src.aggregation.source if src.aggregation else ''}",
                       grads(model, our_loss), grads(model, their_loss),
                       note=f"TRL sums each completion's token log-probabilities and averages over completions; the "
                            f"authors average over tokens: TRL's gradient is about {mask.sum().item() / len(lengths):.2f}"
                            f" (tokens per completion) times the paper's, and its advantages are per completion")
    checks.append(_bounded(gradient, "sequence_sum", deviations))
    return checks
