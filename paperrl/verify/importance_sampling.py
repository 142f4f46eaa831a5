"""The rollout/training mismatch correction (TIS, IcePop/MIS, sequence-level IS), replayed on the CPU.

TRL applies it only to vLLM rollouts: vLLM returns the log-probabilities it sampled each token with, TRL recomputes
them with the training model at the rollout's weights, and weights every token's loss by their (truncated or masked)
ratio. Here the real GRPOTrainer is built without vLLM; its generation step returns the hand-written scenario's
completions together with sampler log-probabilities written by hand (the policy's own, shifted by known amounts, as a
mismatched inference engine would give), and the trainer's `use_vllm` switch is turned on after construction so that
TRL's own correction code runs on them. Nothing else of vLLM is involved: what is checked is TRL's arithmetic from the
sampler's log-probabilities onward, not vLLM.
"""

from __future__ import annotations

import math

import torch

from paperrl.verify.policy import GROUP, MAX_LEN, REWARDS, _Scenario
from paperrl.verify.references import ref_advantages, ref_token_logps
from paperrl.verify.scenario import Check, compare, grads, objective_values, real_trainer, scenario_plan

# log pi_train(theta_old) - log pi_infer(theta_old) per token, by position (row + t): token ratios inside [1/2, 2],
# between 2 and 3 (TRL's default C_max), beyond 3, below 1/2 and below 1/3; on the rollout's lengths the completions'
# products (sequence level) fall in each of those ranges too, every one at least 0.14 (log) from 1/3, 1/2, 2 and 3.
MISMATCH = [0.0, -1.41, -0.44, 1.39, -0.91, -0.02, 0.86, 0.46]
# log pi - log pi_old in the loss (an off-policy update): inside and beyond the clip range 1 +/- 0.2
OFF_POLICY = [0.0, 0.1, -0.15, 0.4, -0.35]
EDGES = (0.5, 2.0, 3.0, 1 / 3)  # every ratio stays this far from any bound a recipe or a mutation might use
MIN_EDGE_MARGIN = 0.02  # in log space


def ref_mismatch_weight(train_logps, infer_logps, mask, spec: dict) -> torch.Tensor:
    """The papers' importance weight of the rollout/training mismatch, k = pi_train(theta_old) / pi_infer(theta_old):
    TIS (Yao, Liu et al.; the authors' verl): min(k_t, C) per token; IcePop (Ring-1T): M(k_t) = k_t if
    C_min <= k_t <= C_max else 0, per token; sequence-level IS (Liu, Li et al.): one k(y) = prod_t k_t per completion,
    truncated or masked the same way. (B, T) per token, (B, 1) per sequence; padding contributes log k = 0."""
    log_k = (train_logps - infer_logps) * mask
    if spec["level"] == "sequence":
        log_k = log_k.sum(-1, keepdim=True)
    k = torch.exp(log_k)
    c_min, c_max = spec.get("c_min"), spec.get("c_max")
    if spec["how"] == "truncate":
        return torch.clamp(k, min=c_min, max=c_max)
    low = -math.inf if c_min is None else c_min
    high = math.inf if c_max is None else c_max
    return torch.where((k >= low) & (k <= high), k, torch.zeros_like(k))


def ref_corrected_loss(logps, old_logps, mask, advantages, weight, clip, aggregation: str):
    """-(weight x min(r A, clip(r, 1 - lo, 1 + hi) A)), r = pi/pi_old per token: the PPO objective the correction
    multiplies (TIS Eq. in the blog; IcePop's J), aggregated as the recipe's objective states."""
    r = torch.exp(logps - old_logps)
    a = advantages.unsqueeze(1)
    surrogate = torch.minimum(r * a, torch.clamp(r, 1 - clip[0], 1 + clip[1]) * a) * weight
    if aggregation == "token_mean":
        return -(surrogate * mask).sum() / mask.sum().clamp(min=1)
    if aggregation == "sequence_mean":
        return -((surrogate * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    raise ValueError(f"mismatch correction: aggregation {aggregation} has no reference here")


def _by_position(mask: torch.Tensor, values: list[float]) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(mask.shape[0]), torch.arange(mask.shape[1]), indexing="ij")
    return torch.tensor(values)[(rows + cols) % len(values)] * mask


def _margin(log_k: torch.Tensor, mask: torch.Tensor, level: str) -> float:
    values = (log_k * mask).sum(-1) if level == "sequence" else log_k[mask > 0]
    edges = torch.tensor([math.log(e) for e in EDGES])
    return (values.reshape(-1, 1) - edges).abs().min().item()


def mismatch_checks(recipe_name: str, sets: list[str]) -> list[Check]:
    """One rollout of 16 scenario completions (4 groups) whose sampler log-probabilities differ from the training
    model's by MISMATCH: TRL's importance weight against the paper's, then the corrected loss and its gradient."""
    plan = scenario_plan(recipe_name, sets, gradient_accumulation_steps=1, steps_per_generation=1,
                         per_device_train_batch_size=16, num_generations=GROUP, max_completion_length=MAX_LEN)
    objective = objective_values(plan.recipe)
    spec = objective["mismatch_correction"]
    scenario = _Scenario()
    trainer = real_trainer(plan, [scenario])
    trainer.current_gradient_accumulation_steps = 1
    scenario.attach(trainer)
    model, temperature = trainer.model, plan.config.get("temperature", 1.0)
    scenario_turn = trainer._generate_single_turn
    sampler = {}

    def generate_with_logprobs(prompt_ids, *args, **kwargs):  # what vLLM returns: ids and its log-probabilities
        ids, _ = scenario_turn(prompt_ids, *args, **kwargs)
        logps = []
        for row, (prompt, completion) in enumerate(zip(prompt_ids, ids)):
            with torch.no_grad():
                own = ref_token_logps(model, torch.tensor([prompt]), torch.ones(1, len(prompt), dtype=torch.long),
                                      torch.tensor([completion]), torch.ones(1, len(completion), dtype=torch.long),
                                      temperature)[0]
            logps.append([float(x) - MISMATCH[(row + t) % len(MISMATCH)] for t, x in enumerate(own)])
        sampler["logps"] = logps
        return ids, logps

    trainer._generate_single_turn = generate_with_logprobs
    trainer.use_vllm = True  # TRL gates its correction on this switch alone once generation is the hook above
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    mask = out["completion_mask"].float()
    width = mask.shape[1]
    infer = torch.tensor([row + [0.0] * (width - len(row)) for row in sampler["logps"]])
    args = (out["prompt_ids"], out["prompt_mask"], out["completion_ids"], out["completion_mask"], temperature)
    with torch.no_grad():
        train_old = ref_token_logps(model, *args)
    margin = _margin(train_old - infer, mask, spec["level"])
    if margin < MIN_EDGE_MARGIN:
        raise AssertionError(f"verify scenario: a mismatch ratio lies {margin:.2g} (log) from a bound")
    ours_w = ref_mismatch_weight(train_old, infer, mask, spec)
    theirs_w = out["importance_sampling_ratio"]
    if spec["level"] == "token":
        ours_w, theirs_w = ours_w * mask, theirs_w * mask
    src = plan.recipe.objective
    bounds = ", ".join(f"{k} {spec[k]}" for k in ("c_min", "c_max") if spec.get(k) is not None)
    note = (f"{len(sampler['logps'])} completions; sampler log-probs written by hand: log k per token in "
            f"{sorted(set(MISMATCH))}; no vLLM (TRL's correction code, fed the sampler's log-probs)")
    checks = [compare(f"mismatch weight ({spec['level']} {spec['how']}, {bounds})", src.mismatch_correction.source,
                      ours_w, theirs_w, note=note)]

    # The corrected loss of the rollout, on-policy and off-policy (pi_old shifted by hand inside and beyond the clip).
    advantages = ref_advantages(torch.tensor(REWARDS[:len(sampler["logps"])], dtype=torch.float32), GROUP,
                                objective["advantage"])
    weight = ref_mismatch_weight(train_old, infer, mask, spec)
    eq = f"{src.mismatch_correction.source}; {src.clip.source}; {src.aggregation.source}"
    for label, shift in (("on-policy", [0.0]), ("off-policy", OFF_POLICY)):
        old = train_old - _by_position(mask, shift)
        inputs = {**out, "old_per_token_logps": old}
        theirs = trainer._compute_loss(model, inputs)
        ours = ref_corrected_loss(ref_token_logps(model, *args), old, mask, advantages, weight, objective["clip"],
                                  objective["aggregation"])
        checks.append(compare(f"corrected policy loss, {label}", eq, ours.detach().reshape(1),
                              theirs.detach().reshape(1)))
        checks.append(compare(f"gradient of the corrected loss, {label}", eq, grads(model, ours), grads(model, theirs)))
    return checks

