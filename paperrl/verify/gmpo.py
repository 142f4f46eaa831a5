"""GMPO (2507.20673): TRL's experimental GMPOTrainer against the paper's geometric-mean objective.

The scenario is GRPO's (paperrl.verify.policy): 32 hand-written completions in one rollout, 2 updates of 2
micro-batches, with old log-probabilities shifted by hand inside GRPO's 0.2, between 0.2 and GMPO's 0.4, and beyond
0.4, on both sides, so that the one-sided log-space clip and the geometric mean are both exercised.
"""

from __future__ import annotations

import torch

from paperrl.verify.policy import GROUP, MAX_LEN, REWARDS, _Scenario
from paperrl.verify.references import ref_advantages, ref_token_logps
from paperrl.verify.scenario import SEED, Check, compare, grads, objective_values, real_trainer, scenario_plan

# log pi - log pi_old per token, by position (row + t): both signs, inside 0.2, between 0.2 and 0.4, beyond 0.4
SHIFTS = [0.0, 0.3, -0.3, 0.6, -0.6, 0.1, -0.5, 0.25]
EDGES = (0.2, 0.4)  # GRPO's and GMPO's clip, in log space: no shift may sit on one
MIN_EDGE_MARGIN = 0.04


def ref_gmpo_loss(logps, old_logps, mask, advantages, clip):
    """GMPO's objective, negated: -(1/G) sum_i (prod_t min[w_t^s, clip(w_t^s, e^-lo, e^hi)]^s)^(1/|o_i|) A_i, with
    w_t = pi/pi_old and s = sgn(A_i) (the paper's one-sided clip, written with the sign as the paper writes it).
    In log space: s * min(s log w, clamp(s log w, -lo, hi)), averaged over the completion's tokens, exponentiated."""
    lo, hi = clip
    s = torch.sign(advantages).unsqueeze(1)
    u = s * (logps - old_logps)
    clipped = s * torch.minimum(u, u.clamp(-lo, hi))
    geometric = torch.exp((clipped * mask).sum(-1) / mask.sum(-1).clamp(min=1))
    return -(geometric * advantages).mean()


def _shifts(mask: torch.Tensor) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(mask.shape[0]), torch.arange(mask.shape[1]), indexing="ij")
    return torch.tensor(SHIFTS)[(rows + cols) % len(SHIFTS)] * mask


def _join(parts: list[dict], key: str, left: bool) -> torch.Tensor:
    """Micro-batches of one update as one batch (prompts padded on the left, completions on the right)."""
    width = max(p[key].shape[1] for p in parts)
    pad = [(width - p[key].shape[1], 0) if left else (0, width - p[key].shape[1]) for p in parts]
    return torch.cat([torch.nn.functional.pad(p[key], w) for p, w in zip(parts, pad)])


def verify_gmpo(recipe_name: str, sets: list[str]) -> list[Check]:
    ga, spg = 2, 4
    plan = scenario_plan(recipe_name, sets, gradient_accumulation_steps=ga, steps_per_generation=spg,
                         per_device_train_batch_size=8, num_generations=GROUP, max_completion_length=MAX_LEN)
    objective = objective_values(plan.recipe)
    src = plan.recipe.objective
    scenario = _Scenario()
    trainer = real_trainer(plan, [scenario])
    trainer.current_gradient_accumulation_steps = ga
    scenario.attach(trainer)
    generate = trainer._generate_and_score_completions
    captured = {}

    def capture(rows):  # the rollout in generation order (TRL shuffles it before splitting)
        out = generate(rows)
        captured.update({k: v.clone() for k, v in out.items() if torch.is_tensor(v)})
        return out

    trainer._generate_and_score_completions = capture
    batch = next(iter(trainer.get_train_dataloader()))
    torch.manual_seed(SEED)
    trainer._prepare_inputs(batch)
    slices = trainer._buffered_inputs
    checks = [compare(f"advantage ({objective['advantage']})", src.advantage.source,
                      ref_advantages(torch.tensor(REWARDS, dtype=torch.float32), GROUP, objective["advantage"]),
                      captured["advantages"])]
    model = trainer.model
    temperature = plan.config.get("temperature", 1.0)
    ours, theirs, our_grads, their_grads, margin = [], [], [], [], float("inf")
    for start in range(0, spg, ga):
        parts = []
        for s in slices[start:start + ga]:
            s = dict(s)
            with torch.no_grad():
                current = ref_token_logps(model, s["prompt_ids"], s["prompt_mask"], s["completion_ids"],
                                          s["completion_mask"], temperature)
            offset = _shifts(s["completion_mask"].float())
            s["old_per_token_logps"] = current - offset
            values = offset[s["completion_mask"] > 0].abs()
            margin = min(margin, min((values - e).abs().min().item() for e in EDGES))
            parts.append(s)
        their_loss = sum(trainer._compute_loss(model, s) for s in parts)
        mask = _join(parts, "completion_mask", False)
        logps = ref_token_logps(model, _join(parts, "prompt_ids", True), _join(parts, "prompt_mask", True),
                                _join(parts, "completion_ids", False), mask, temperature)
        our_loss = ref_gmpo_loss(logps, _join(parts, "old_per_token_logps", False), mask.float(),
                                 torch.cat([p["advantages"] for p in parts]), objective["geometric_mean"])
        their_grads.append(grads(model, their_loss))
        our_grads.append(grads(model, our_loss))
        theirs.append(their_loss.detach())
        ours.append(our_loss.detach())
    if margin < MIN_EDGE_MARGIN:
        raise AssertionError(f"verify scenario: a log-ratio lies {margin:.2g} from a clip edge")
    note = (f"{spg // ga} updates of {ga} micro-batches; log pi/pi_old per token in {sorted(set(SHIFTS))}: inside "
            "0.2, between 0.2 and 0.4, beyond 0.4")
    eq = src.geometric_mean.source
    checks.append(compare("GMPO loss (one-sided log-space clip, geometric mean of the token ratios)", eq,
                          torch.stack(ours), torch.stack(theirs), note=note))
    checks.append(compare("gradient of the GMPO loss, all parameters", eq, torch.cat(our_grads),
                          torch.cat(their_grads), note=note))
    return checks
