"""GRPO's family and RLOO: the real trainer fed completions, rewards and old log-probabilities written by hand."""

from __future__ import annotations

import inspect
import math

import torch

from paperrl import demo
from paperrl.verify.references import (ref_advantages, ref_cosine_reward, ref_entropy_coefficients,
                                       ref_entropy_mask, ref_gdpo_advantages, ref_policy_loss, ref_reinforce_loss,
                                       ref_soft_overlong, ref_token_entropies, ref_token_logps)
from paperrl.verify.scenario import SEED, Check, compare, grads, objective_values, perturb, real_trainer, scenario_plan

# ---------------------------------------------------------------- the scenario, written by hand
#
# Nothing below is sampled: completions, terminations and rewards are fixed here, so every machine checks
# the same cases. The model's weights only turn these tokens into log-probabilities, which TRL and the
# reference both compute from the same weights. "E" is the end-of-sequence token; a completion without
# it fills MAX_LEN tokens and is truncated.

MAX_LEN = 6
GROUP = 4
COMPLETIONS = [  # 8 prompts x 4 completions; lengths 1..6 so mini-batches hold different token counts
    "12E", "3E", "45E", "123456",  # rewards all equal: zero advantage, one truncated completion
    "7E", "8E", "9E", "10E",  # all equal again, every completion terminated
    "1E", "22E", "333E", "4444E",  # varied
    "1234E", "123456", "E", "99999E",  # one ends in E exactly at MAX_LEN-1, one truncated, one is only E
    "5E", "55E", "555E", "5555E",
    "6E", "66666E", "666666", "66E",
    "0E", "00E", "000E", "000000",
    "42E", "4E", "424242", "2E",
]
REWARDS = [1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 2, 2, 0, 1, 0,
           0, 1, 2, 1, 1, 0, 2, 0, 2, 2, 0, 1, 0, 1, 1, 2]
# log pi - log pi_old per token, by position: ratios of 1, just inside and beyond each clip range; the first
# token of every completion with a positive advantage gets e^0.22 = 1.25, between 1 + 0.2 and 1 + 0.28.
SHIFTS = [0.0, 1e-4, -2e-4, 0.05, -0.1, 0.22, 0.25, -0.3]
CLIP_HIGHER_SHIFT = 0.22
# a second written reward, for objectives over several rewards (GDPO): 1 for a completion of at most 2 tokens; it
# varies inside groups whose first reward is constant, where normalising each reward apart differs from the sum
REWARDS_2 = [float(len(text) <= 2) for text in COMPLETIONS]
# INTELLECT-2's two-sided clip: the second token of every completion with a negative advantage gets e^1.6 = 4.95,
# beyond the cap delta = 4 and beyond 1 + eps
RATIO_CAP_SHIFT = 1.6
# V3.2's off-policy mask: every other completion with a negative advantage drifts by 0.8 nats per token on average
# (pi_old above pi), beyond the mask's delta = 0.5, all of it on its first token, so that its other tokens keep
# ratios inside the clip range and a gradient the mask must remove; the others' drift stays within 0.3
OFF_POLICY_DRIFT = 0.8
KL_PERTURBATION = 0.05  # weight noise that moves the policy from the reference when the loss has a KL term
MIN_CLIP_MARGIN = 1e-5  # no ratio may sit so close to a clip edge that float rounding decides its side


def scenario_ids(tokenizer) -> list[list[int]]:
    eos = tokenizer.eos_token_id
    return [[eos if ch == "E" else tokenizer.convert_tokens_to_ids(ch) for ch in text] for text in COMPLETIONS]


def truncated() -> torch.Tensor:
    """Paper: a completion that reached the length limit without ending (DAPO §3.4)."""
    return torch.tensor([not text.endswith("E") for text in COMPLETIONS])


class _Scenario:
    """Stands in for sampling: TRL's generation step returns the scenario's completions in order (cycling on
    when a run asks for more, as dynamic sampling does), and the reward function scores each with its
    written reward. Everything after generation (masks, truncation, advantages, old log-probabilities,
    buffering) is TRL's own code. GRPOTrainer's generation step returns (completion ids, sampling
    log-probabilities), RLOOTrainer's the ids alone."""

    __name__ = "table_reward"

    def __init__(self):
        self.ids, self.cursor, self.last = [], 0, []

    def attach(self, trainer):
        self.ids = scenario_ids(trainer.processing_class)
        with_logprobs = "num_generations" in inspect.signature(trainer._generate_single_turn).parameters

        def generate_single_turn(prompt_ids, *args, **kwargs):
            self.last = [(self.cursor + i) % len(self.ids) for i in range(len(prompt_ids))]
            self.cursor += len(prompt_ids)
            ids = [list(self.ids[i]) for i in self.last]
            return (ids, None) if with_logprobs else ids

        trainer._generate_single_turn = generate_single_turn

    def __call__(self, completions, **kwargs):
        return [float(REWARDS[i]) for i in self.last]


class _SecondReward:
    """REWARDS_2 for the completions the scenario handed out last."""

    __name__ = "table_reward_2"

    def __init__(self, scenario: _Scenario):
        self.scenario = scenario

    def __call__(self, completions, **kwargs):
        return [REWARDS_2[i] for i in self.scenario.last]


def _shifts(mask: torch.Tensor, advantages: torch.Tensor, objective: dict | None = None) -> torch.Tensor:
    objective = objective or {}
    rows, cols = torch.meshgrid(torch.arange(mask.shape[0]), torch.arange(mask.shape[1]), indexing="ij")
    offset = torch.tensor(SHIFTS)[(rows + cols) % len(SHIFTS)]
    offset[:, 0] = torch.where(advantages > 0, CLIP_HIGHER_SHIFT, offset[:, 0])
    negative = advantages < 0
    if "ratio_cap" in objective:
        offset[:, 1] = torch.where(negative, RATIO_CAP_SHIFT, offset[:, 1])
    if "off_policy_mask" in objective:  # the first token carries the drift, the others keep ratios inside the clip
        drifting = negative & (torch.cumsum(negative.long(), 0) % 2 == 1)
        rest = (offset[:, 1:] * mask[:, 1:]).sum(-1)
        first = -OFF_POLICY_DRIFT * mask.sum(-1) - rest
        offset[:, 0] = torch.where(drifting, first, offset[:, 0])
    return offset * mask


def clip_margin(offset: torch.Tensor, mask: torch.Tensor, objective: dict) -> float:
    """Distance, in log-ratio, from the scenario's ratios to the nearest clip edge (none without a clip)."""
    if "clip" not in objective:
        return math.inf
    low, high = objective["clip"]
    edges = torch.tensor(([math.log1p(-low)] if low < 1 else []) + [math.log1p(high)]  # low >= 1: no lower edge
                         + ([math.log(objective["ratio_cap"])] if "ratio_cap" in objective else []))
    if objective["ratio"] == "sequence":
        values = (offset.sum(-1) / mask.sum(-1).clamp(min=1))[mask.sum(-1) > 0]
    else:
        values = offset[mask > 0]
    return (values.unsqueeze(-1) - edges).abs().min().item()


def verify_grpo(recipe_name: str, sets: list[str]) -> list[Check]:
    # One rollout of 32 completions in 4 micro-batches of 8; 2 micro-batches per update (accumulation), so 2
    # updates per rollout: what the paper calls mini-batches, with accumulation inside each.
    ga, spg = 2, 4
    plan = scenario_plan(recipe_name, sets, gradient_accumulation_steps=ga, steps_per_generation=spg,
                 per_device_train_batch_size=8, num_generations=GROUP, max_completion_length=MAX_LEN)
    objective = objective_values(plan.recipe)
    scenario = _Scenario()
    several = objective.get("advantage") == "gdpo"  # an objective over several rewards: two written rewards
    trainer = real_trainer(plan, [scenario, _SecondReward(scenario)] if several else [scenario])
    trainer.current_gradient_accumulation_steps = ga
    scenario.attach(trainer)
    reference = None
    if "kl" in objective:  # pi_ref: the embedded model as loaded (not TRL's copy); the policy moved away from it
        from transformers import AutoModelForCausalLM

        reference = AutoModelForCausalLM.from_pretrained(demo.model_dir()).eval()
        perturb(trainer.model, KL_PERTURBATION)
    generate = trainer._generate_and_score_completions

    def capture(rows):  # keep the rollout in generation order (TRL shuffles it before splitting)
        out = generate(rows)
        trainer._paperrl_last_generation = {k: v.clone() for k, v in out.items() if torch.is_tensor(v)}
        return out

    trainer._generate_and_score_completions = capture
    batch = next(iter(trainer.get_train_dataloader()))
    torch.manual_seed(SEED)  # TRL's shuffle of the rollout before it is split: the same permutation anywhere
    trainer._prepare_inputs(batch)  # scoring, advantages, buffering (and paperrl's subclasses)
    slices = trainer._buffered_inputs
    gen = trainer._paperrl_last_generation
    src = plan.recipe.objective
    rewards = torch.tensor(REWARDS, dtype=torch.float32)
    if several:
        expected = ref_gdpo_advantages(torch.stack([rewards, torch.tensor(REWARDS_2)], dim=1), [1.0, 1.0], GROUP)
        note = "two written rewards of equal weight; the second varies inside groups where the first is constant"
    else:
        expected, note = ref_advantages(rewards, GROUP, objective["advantage"]), ""
    checks = [compare(f"advantage ({objective['advantage']})", src.advantage.source, expected, gen["advantages"],
                      note=note)]

    if objective.get("overlong_filtering") is not None:
        lengths = torch.tensor([len(t) for t in COMPLETIONS], dtype=torch.float32)
        expected = torch.where(truncated() & objective["overlong_filtering"], 0.0, lengths)
        checks.append(compare("overlong filtering: truncated completions get no loss", src.overlong_filtering.source,
                               expected, gen["completion_mask"].sum(dim=1).float(),
                               note=f"{int(truncated().sum())} of {len(COMPLETIONS)} truncated: no EOS within "
                                    f"{MAX_LEN} tokens (TRL's test, last token neither EOS nor pad, agrees: no "
                                    "completion here holds a pad token)"))

    # Loss and gradient of every update, with off-policy old log-probabilities written by hand.
    model = trainer.model
    temperature = plan.config.get("temperature", 1.0)
    windows = [slices[i:i + ga] for i in range(0, spg, ga)]
    control = objective.get("entropy_control")
    coefficients = []  # TRL's entropy coefficient after each update (adaptive entropy control)
    if control:  # the entropies the controller measures; the model does not move between updates (no step taken)
        with torch.no_grad():
            measured = [_mean_entropy(model, w, temperature).item() for w in windows]
        applied, _ = ref_entropy_coefficients(measured, control)
    ours, theirs, our_grads, their_grads, margins, tokens, updates = [], [], [], [], [], [], []
    for window in windows:
        parts = []
        for s in window:
            s = dict(s)
            mask = s["completion_mask"].float()
            with torch.no_grad():
                current = ref_token_logps(model, s["prompt_ids"], s["prompt_mask"], s["completion_ids"],
                                          s["completion_mask"], temperature)
            offset = _shifts(mask, s["advantages"], objective)
            s["old_per_token_logps"] = current - offset
            margins.append(clip_margin(offset, mask, objective))
            if "off_policy_mask" in objective:  # no sequence's drift so close to delta that rounding decides
                drift = -(offset.sum(-1) / mask.sum(-1).clamp(min=1))[mask.sum(-1) > 0]
                margins.append((drift - objective["off_policy_mask"]).abs().min().item())
            parts.append(s)
        their_loss = _trl_update_loss(trainer, model, parts)
        coefficients.append(float(getattr(trainer, "entropy_coef", 0.0)))
        our_loss = _window_loss(model, parts, objective, temperature, reference)
        if control:  # Skywork-OR1: L - alpha_k H; H averaged per micro-batch as TRL and the authors' verl do (the
            # paper's mean over the update's tokens: the entropy bonus row)
            our_loss = our_loss - applied[len(ours)] * _micro_mean_entropy(model, parts, temperature)
        their_grads.append(grads(model, their_loss))
        our_grads.append(grads(model, our_loss))
        theirs.append(their_loss.detach())
        ours.append(our_loss.detach())
        tokens.append(int(sum(s["completion_mask"].sum() for s in parts)))
        updates.append(parts)
    if min(margins) < MIN_CLIP_MARGIN:
        raise AssertionError(f"verify scenario: a ratio lies {min(margins):.2g} from a clip edge")
    eq = "; ".join(getattr(src, k).source for k in ("ratio", "clip", "soft_gate", "is_cap", "vespo", "ratio_cap",
                                                     "off_policy_mask", "entropy_mask", "aggregation", "kl",
                                                     "kl_weighting", "entropy_control") if getattr(src, k))
    note = f"{len(windows)} updates of {ga} micro-batches, tokens per update {tokens}"
    if "entropy_mask" in objective:
        note += "; the entropy threshold per micro-batch, as TRL takes it (the paper's batch-wide one: next rows)"
    checks.append(compare("policy loss (ratio, clip, aggregation)", eq, torch.stack(ours), torch.stack(theirs),
                           note=note))
    checks.append(compare("gradient of the policy loss, all parameters", eq, torch.cat(our_grads),
                           torch.cat(their_grads), note=note))
    if "entropy_mask" in objective:
        checks += _entropy_threshold_deviation(plan, trainer, model, updates, objective, temperature, reference,
                                               torch.stack(theirs))
    if control:
        checks.append(_check_entropy_control(plan, trainer, model, updates, objective, temperature, coefficients))
        checks.append(_entropy_bonus_deviation(plan, trainer, model, updates, temperature))
    if objective.get("overlong_reward"):
        checks.append(_check_soft_overlong(plan, objective))
    if objective.get("cosine_reward"):
        checks.append(_check_cosine_reward(recipe_name, sets, objective, src.cosine_reward.source))
    if plan.recipe.dynamic_sampling and plan.recipe.dynamic_sampling.enabled.value:
        checks += _check_dynamic_sampling(recipe_name, sets, objective)
    if plan.recipe.exact_token_normaliser and plan.recipe.exact_token_normaliser.value:
        checks.append(_trl_normaliser_deviation(plan, trainer, updates, torch.stack(ours), gen, tokens))
    if objective.get("mismatch_correction"):  # TIS, IcePop, sequence-level IS: vLLM's correction, replayed (grpo-b)
        from paperrl.verify.importance_sampling import mismatch_checks

        checks += mismatch_checks(recipe_name, sets)
    return checks


def _trl_update_loss(trainer, model, parts):
    """TRL's loss of one update, its micro-batches accumulated: the optimizer step's boundary (when TRL's adaptive
    entropy control measures and moves its coefficient) falls on the last one, as in training."""
    state = trainer.accelerator.gradient_state
    loss = 0
    for i, s in enumerate(parts):
        state._set_sync_gradients(i == len(parts) - 1)
        loss = loss + trainer._compute_loss(model, s)
    state._set_sync_gradients(True)
    return loss


def _window_entropies(model, parts, temperature):
    """The entropy of the policy at every completion token of one update, and the update's completion mask."""
    out, masks = [], []
    width = max(p["completion_ids"].shape[1] for p in parts)
    for p in parts:
        h = ref_token_entropies(model, p["prompt_ids"], p["prompt_mask"], p["completion_ids"], p["completion_mask"],
                                temperature)
        out.append(torch.nn.functional.pad(h, (0, width - h.shape[1])))
        masks.append(torch.nn.functional.pad(p["completion_mask"].float(), (0, width - h.shape[1])))
    return torch.cat(out), torch.cat(masks)


def _mean_entropy(model, parts, temperature):
    h, m = _window_entropies(model, parts, temperature)
    return (h * m).sum() / m.sum().clamp(min=1)


def _micro_mean_entropy(model, parts, temperature):
    """The mean of the micro-batches' mean token entropies."""
    return sum(_mean_entropy(model, [p], temperature) for p in parts) / len(parts)


def _entropy_bonus_deviation(plan, trainer, model, updates, temperature) -> Check:
    """The entropy TRL's bonus multiplies (its loss with the coefficient at 1 minus its loss at 0), against the
    paper's mean token entropy over the update: TRL averages each micro-batch's mean, as the authors' verl does."""
    saved = (trainer.entropy_coef, trainer._last_world_entropy, trainer._entropy_window_stats)
    state = trainer.accelerator.gradient_state
    theirs, ours = [], []
    with torch.no_grad():
        for parts in updates:
            losses = []
            for coef in (0.0, 1.0):
                trainer.entropy_coef, trainer._last_world_entropy = coef, -math.inf
                state._set_sync_gradients(False)  # no step boundary: the controller does not move
                losses.append(sum(trainer._compute_loss(model, s) for s in parts))
                trainer._entropy_window_stats = None
            state._set_sync_gradients(True)
            theirs.append(losses[0] - losses[1])
            ours.append(_mean_entropy(model, parts, temperature))
    trainer.entropy_coef, trainer._last_world_entropy, trainer._entropy_window_stats = saved
    check = compare("entropy bonus: the mean token entropy the coefficient multiplies",
                    plan.recipe.objective.entropy_control.source, torch.stack(ours), torch.stack(theirs),
                    note="TRL takes the mean of each micro-batch's mean token entropy (as the authors' verl), the paper "
                         "the mean over the update's tokens; they differ when micro-batches hold different token counts")
    return _bounded(check, "entropy_bonus_mean", plan.recipe.deviations)


def _check_entropy_control(plan, trainer, model, updates, objective, temperature, coefficients) -> Check:
    """Skywork-OR1's adaptive entropy coefficient over 6 optimizer steps (the scenario's 2 updates, 3 times over):
    TRL's coefficient after each step against the paper's controller fed the same measured entropies."""
    control = objective["entropy_control"]
    with torch.no_grad():
        for _ in range(2):
            for parts in updates:
                _trl_update_loss(trainer, model, parts)
                coefficients.append(float(trainer.entropy_coef))
        measured = [_mean_entropy(model, parts, temperature).item() for parts in updates] * 3
    _, after = ref_entropy_coefficients(measured, control)
    return compare("adaptive entropy coefficient after each optimizer step", plan.recipe.objective.entropy_control.source,
                   torch.tensor(after, dtype=torch.float64), torch.tensor(coefficients, dtype=torch.float64),
                   note=f"mean token entropy of the updates {[round(e, 4) for e in measured[:2]]} against the target "
                        f"{control['target']}; coefficient from {control['initial']} in steps of {control['delta']} within "
                        f"[{control['min']}, {control['max']}]")


def _entropy_threshold_deviation(plan, trainer, model, updates, objective, temperature, reference, theirs):
    """80/20's threshold over the whole update (the paper's batch B) against TRL's, taken per micro-batch: the tokens
    each keeps (TRL's own mask, from its own entropies) and the update's loss."""
    rho, src = objective["entropy_mask"], plan.recipe.objective.entropy_mask.source
    ours, kept_paper, kept_trl, differ = [], [], [], 0
    with torch.no_grad():
        for parts in updates:
            h, m = _window_entropies(model, parts, temperature)
            paper = ref_entropy_mask(h, m, rho)
            trl = []
            for p in parts:
                ids = torch.cat([p["prompt_ids"], p["completion_ids"]], dim=1)
                att = torch.cat([p["prompt_mask"], p["completion_mask"]], dim=1)
                _, ent, _ = trainer._get_per_token_logps_and_entropies(model, ids, att, p["completion_ids"].shape[1],
                                                                       compute_entropy=True)
                mask = trainer.get_high_entropy_mask(ent, p["completion_mask"], 1 - trainer.top_entropy_quantile)
                trl.append(torch.nn.functional.pad(mask.float(), (0, h.shape[1] - mask.shape[1])))
            trl = torch.cat(trl)
            kept_paper.append(paper.sum())
            kept_trl.append(trl.sum())
            differ += int((paper != trl).sum())
            ours.append(_window_loss(model, parts, objective, temperature, reference, threshold_scope="update"))
    note = (f"TRL takes the (1 - rho)-quantile over each micro-batch's tokens, the paper over the batch's: {differ} "
            "token(s) of the scenario's updates change side")
    mask_check = compare("high-entropy tokens given a gradient, with the paper's batch-wide threshold", src,
                         torch.stack(kept_paper), torch.stack(kept_trl), note=note)
    if differ:
        mask_check.status = ""
        mask_check.relative = differ / max(float(sum(kept_paper)), 1.0)
        mask_check.max_abs_diff, mask_check.tolerance = float(differ), 0.0
        mask_check.status = "FAIL"
    loss_check = compare("policy loss with the paper's batch-wide entropy threshold", src, torch.stack(ours), theirs,
                         note=note)
    return [_bounded(mask_check, "entropy_quantile_batch", plan.recipe.deviations),
            _bounded(loss_check, "entropy_quantile_batch", plan.recipe.deviations)]


def _check_dynamic_sampling(recipe_name: str, sets: list[str], objective: dict) -> list[Check]:
    """DAPO §3.2 on the scenario: a rollout of 8 groups whose first 2 have equal rewards. Round 1 keeps groups
    2-7; each later round asks for the 2 missing groups, and the scenario hands out its next ones: round 2
    groups 0-1 (dropped), round 3 groups 2-3 (kept). The advantages must be the paper's over the kept groups."""
    plan = scenario_plan(recipe_name, sets, dynamic_sampling={"metric": "reward", "oversample": 1.0, "max_rounds": 10},
                 gradient_accumulation_steps=1, steps_per_generation=4, per_device_train_batch_size=8,
                 num_generations=GROUP, max_completion_length=MAX_LEN)
    scenario = _Scenario()
    trainer = real_trainer(plan, [scenario])
    scenario.attach(trainer)
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    kept_groups = [2, 3, 4, 5, 6, 7, 2, 3]
    expected = torch.tensor([float(REWARDS[g * GROUP + i]) for g in kept_groups for i in range(GROUP)])
    rollout = trainer.last_rollout
    src = plan.recipe.dynamic_sampling
    note = (f"{rollout['rounds']} rounds, {rollout['kept']} of {rollout['need']} groups kept; filtered on the "
            "scenario's reward, which stands in for the accuracy")
    return [
        compare("dynamic sampling: the kept groups are the informative ones, in order", src.enabled.source,
                 expected, rollout["rewards_per_func"][:, 0], note=note),
        compare(f"dynamic sampling: advantage ({objective['advantage']}) over the kept groups",
                 plan.recipe.objective.advantage.source, ref_advantages(expected, GROUP, objective["advantage"]),
                 out["advantages"], note=note),
    ]


def _window_loss(model, parts, objective, temperature, ref_model=None, threshold_scope="micro"):
    """The paper's loss of one update: its micro-batches joined (padding to a common width). With 80/20's entropy
    mask, the threshold is taken over each micro-batch (TRL's choice) or over the whole update (the paper's)."""
    width = max(p["completion_ids"].shape[1] for p in parts)
    pwidth = max(p["prompt_ids"].shape[1] for p in parts)

    def cat(key, w, left, value=0):
        return torch.cat([torch.nn.functional.pad(p[key], (w - p[key].shape[1], 0) if left else (0, w - p[key].shape[1]),
                                                  value=value) for p in parts])

    prompt_ids, prompt_mask = cat("prompt_ids", pwidth, True), cat("prompt_mask", pwidth, True)
    completion_ids, completion_mask = cat("completion_ids", width, False), cat("completion_mask", width, False)
    old = cat("old_per_token_logps", width, False)
    logps = ref_token_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature)
    advantages = torch.cat([p["advantages"] for p in parts])
    ref = None
    if "kl" in objective:
        with torch.no_grad():
            ref = ref_token_logps(ref_model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature)
    keep = None
    if "entropy_mask" in objective:
        with torch.no_grad():
            h, m = _window_entropies(model, parts, temperature)
            rho = objective["entropy_mask"]
            if threshold_scope == "update":
                keep = ref_entropy_mask(h, m, rho)
            else:
                sizes = [p["completion_ids"].shape[0] for p in parts]
                keep = torch.cat([ref_entropy_mask(hh, mm, rho) for hh, mm in zip(h.split(sizes), m.split(sizes))])
            keep = keep[:, :width]
    return ref_policy_loss(logps, old, completion_mask.float(), advantages, objective, MAX_LEN, ref, keep)


def _trl_normaliser_deviation(plan, trainer, updates, ours, gen, tokens) -> Check:
    """What TRL's own `dapo` normaliser gives on the same updates (paperrl's subclass replaces it).

    TRL divides every update by one estimate, the rollout's tokens x accumulation / steps_per_generation;
    the paper by the update's own tokens N. Its loss is therefore the paper's times N / estimate."""
    total = gen["completion_mask"].sum()
    theirs = torch.stack([sum(trainer._compute_loss(trainer.model, {**s, "num_items_in_batch": total}) for s in u)
                          .detach() for u in updates])
    estimate = float(total) * trainer.args.gradient_accumulation_steps / trainer.args.steps_per_generation
    predicted = max(abs(n / estimate - 1) for n in tokens)
    check = compare("TRL's own dapo normaliser (without paperrl's exact_token_normaliser)",
                     plan.recipe.objective.aggregation.source, ours, theirs,
                     note=f"TRL divides every update by {estimate:g} tokens; the updates hold {tokens}: "
                          f"N / estimate - 1 predicts {predicted:.1%}")
    check.relative = ((theirs - ours).abs() / ours.abs().clamp(min=1e-12)).max().item()  # per update
    return _bounded(check, "trl_token_normaliser", plan.recipe.deviations)


def _bounded(check: Check, key: str, deviations: dict) -> Check:
    """A known deviation: tolerated up to the recipe's stated bound, FAIL beyond it (or without one)."""
    if check.status == "PASS":
        return check
    if key not in deviations:
        check.note += f"; the recipe states no bound (deviations.{key})"
        return check
    check.bound = deviations[key].max_relative
    check.status = "KNOWN DEVIATION" if check.relative <= check.bound else "FAIL"
    check.note += f"; tolerated up to {check.bound:.0%} (the recipe's deviations.{key})"
    return check


def _check_soft_overlong(plan, objective) -> Check:
    from paperrl import rewards as rewardmod

    l_max, l_cache = objective["overlong_reward"]  # the paper's, not the demo run's scaled-down ones
    fn = rewardmod.build([{"name": "soft_overlong_punishment", "weight": 1.0,
                           "args": {"max_completion_len": l_max, "soft_punish_cache": l_cache}}])[0][0]
    lengths = [l_max - l_cache - 1, l_max - l_cache, l_max - l_cache + 1, l_max - l_cache // 2, l_max, l_max + 1]
    theirs = torch.tensor(fn(completion_ids=[[0] * n for n in lengths]), dtype=torch.float32)
    return compare("soft overlong punishment", plan.recipe.objective.overlong_reward.source,
                    ref_soft_overlong(lengths, l_max, l_cache), theirs)


def _check_cosine_reward(recipe_name: str, sets: list[str], objective: dict, source: str) -> Check:
    """The recipe's cosine length-scaling reward, as the paper's run configures it (not the demo's scaled-down one),
    at lengths around 0, L_max / 2 and L_max, for a correct and a wrong answer, against the paper's formula."""
    from paperrl import recipe as recipes
    from paperrl import rewards as rewardmod
    from paperrl.resolve import Options, resolve

    plan = resolve(recipes.load(recipe_name, sets), Options(model="m", output_dir="/tmp/paperrl-verify"))
    spec = next((r for r in plan.rewards if r["name"] == "cosine_scaled"), None)
    spec_values = objective["cosine_reward"]
    if spec is None:
        return Check("cosine length-scaling reward", source, float("inf"), 0.0, note="the recipe has no cosine_scaled reward")
    fn = rewardmod.build([spec])[0][0]
    l_max = spec_values["l_max"]
    lengths = [0, 1, l_max // 4, l_max // 2, l_max - 1, l_max, l_max + 1]
    boxed = spec["args"].get("verifier", "accuracy") == "accuracy"
    right, wrong = (r"\boxed{3}", r"\boxed{4}") if boxed else ("3", "4")
    theirs, correct = [], []
    for answer, ok in ((right, True), (wrong, False)):
        theirs += fn(completions=[answer] * len(lengths), solution=["3"] * len(lengths),
                     completion_ids=[[0] * n for n in lengths])
        correct += [ok] * len(lengths)
    return compare("cosine length-scaling reward", source, ref_cosine_reward(lengths * 2, correct, spec_values),
                   torch.tensor(theirs, dtype=torch.float64),
                   note=f"lengths {lengths} tokens, a correct and a wrong answer, the recipe's reward arguments")


def verify_rloo(recipe_name: str, sets: list[str]) -> list[Check]:
    from paperrl import recipe as recipes

    if objective_values(recipes.load(recipe_name, sets)).get("advantage") == "global":  # REINFORCE++ (grpo-b)
        from paperrl.verify.reinforce_pp import verify_reinforce_pp

        return verify_reinforce_pp(recipe_name, sets)
    # The scenario's first 4 groups: one rollout of 16 completions in 2 mini-batches of 8.
    plan = scenario_plan(recipe_name, sets, gradient_accumulation_steps=1, steps_per_generation=2,
                 per_device_train_batch_size=8, num_generations=GROUP, max_completion_length=MAX_LEN)
    beta = objective_values(plan.recipe)["kl_in_reward"]
    scenario = _Scenario()
    trainer = real_trainer(plan, [scenario])
    trainer.current_gradient_accumulation_steps = 1
    scenario.attach(trainer)
    perturb(trainer.model)  # so that the policy differs from the reference and the KL term is not zero
    batch = next(iter(trainer.get_train_dataloader()))
    out = trainer._generate_and_score_completions(batch)
    model, ref = trainer.model, trainer.ref_model
    args = (out["prompt_ids"], out["prompt_mask"], out["completion_ids"], out["completion_mask"],
            plan.config.get("temperature", 1.0))
    mask = out["completion_mask"].float()
    with torch.no_grad():
        kl = ((ref_token_logps(model, *args) - ref_token_logps(ref, *args)) * mask).sum(-1)
    rewards = torch.tensor(REWARDS[: len(batch)], dtype=torch.float32) - beta * kl
    src = plan.recipe.objective
    checks = [compare("advantage: leave-one-out baseline, KL in the reward",
                       f"{src.advantage.source}; {src.kl_in_reward.source}",
                       ref_advantages(rewards, GROUP, "leave_one_out"), out["advantages"], rel=1e-3)]
    # On-policy (the rollout's first mini-batch) and off-policy (its second), with sequence log-ratios
    # written by hand, some beyond TRL's default clip of 1 +/- 0.2: the paper's REINFORCE is unclipped.
    inputs = dict(out)
    logps = ref_token_logps(model, *args)
    seq_logps = (logps.detach() * mask).sum(-1)
    theirs_on = trainer._compute_loss(model, {**inputs, "old_logps": seq_logps})
    ours_on = ref_reinforce_loss(ref_token_logps(model, *args), mask, inputs["advantages"])
    eq = src.ratio.source
    checks.append(compare("REINFORCE gradient, on-policy", eq, grads(model, ours_on), grads(model, theirs_on)))
    shift = torch.tensor([0.5, -0.5, 0.3, -0.4] * 4)[: mask.shape[0]]
    weights = torch.exp(shift)
    theirs_off = trainer._compute_loss(model, {**inputs, "old_logps": seq_logps - shift})
    ours_off = -(inputs["advantages"] * weights * (ref_token_logps(model, *args) * mask).sum(-1)).mean()
    checks.append(compare("REINFORCE gradient, off-policy mini-batch (importance-weighted, unclipped)", eq,
                           grads(model, ours_off), grads(model, theirs_off),
                           note="sequence ratios e^0.5, e^-0.5, e^0.3, e^-0.4: TRL's default epsilon 0.2 would clip "
                                "them; the recipe sets epsilon beyond reach"))
    return checks
