"""GRPO's family and RLOO: the real trainer fed completions, rewards and old log-probabilities written by hand."""

from __future__ import annotations

import inspect
import math

import torch

from paperrl import demo
from paperrl.verify.references import (ref_advantages, ref_policy_loss, ref_reinforce_loss,
                                       ref_soft_overlong, ref_token_logps)
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


def _shifts(mask: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(mask.shape[0]), torch.arange(mask.shape[1]), indexing="ij")
    offset = torch.tensor(SHIFTS)[(rows + cols) % len(SHIFTS)]
    offset[:, 0] = torch.where(advantages > 0, CLIP_HIGHER_SHIFT, offset[:, 0])
    return offset * mask


def clip_margin(offset: torch.Tensor, mask: torch.Tensor, objective: dict) -> float:
    """Distance, in log-ratio, from the scenario's ratios to the nearest clip edge (none without a clip)."""
    if "clip" not in objective:
        return math.inf
    low, high = objective["clip"]
    edges = torch.tensor(([math.log1p(-low)] if low < 1 else []) + [math.log1p(high)])  # low >= 1: no lower edge
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
    trainer = real_trainer(plan, [scenario])
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
    checks = [compare(f"advantage ({objective['advantage']})", src.advantage.source,
                       ref_advantages(torch.tensor(REWARDS, dtype=torch.float32), GROUP, objective["advantage"]),
                       gen["advantages"])]

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
    ours, theirs, our_grads, their_grads, margins, tokens, updates = [], [], [], [], [], [], []
    for window in windows:
        parts = []
        for s in window:
            s = dict(s)
            mask = s["completion_mask"].float()
            with torch.no_grad():
                current = ref_token_logps(model, s["prompt_ids"], s["prompt_mask"], s["completion_ids"],
                                          s["completion_mask"], temperature)
            offset = _shifts(mask, s["advantages"])
            s["old_per_token_logps"] = current - offset
            margins.append(clip_margin(offset, mask, objective))
            parts.append(s)
        their_loss = sum(trainer._compute_loss(model, s) for s in parts)
        our_loss = _window_loss(model, parts, objective, temperature, reference)
        their_grads.append(grads(model, their_loss))
        our_grads.append(grads(model, our_loss))
        theirs.append(their_loss.detach())
        ours.append(our_loss.detach())
        tokens.append(int(sum(s["completion_mask"].sum() for s in parts)))
        updates.append(parts)
    if min(margins) < MIN_CLIP_MARGIN:
        raise AssertionError(f"verify scenario: a ratio lies {min(margins):.2g} from a clip edge")
    eq = "; ".join(getattr(src, k).source for k in ("ratio", "clip", "soft_gate", "is_cap", "aggregation", "kl")
                   if getattr(src, k))
    note = f"{len(windows)} updates of {ga} micro-batches, tokens per update {tokens}"
    checks.append(compare("policy loss (ratio, clip, aggregation)", eq, torch.stack(ours), torch.stack(theirs),
                           note=note))
    checks.append(compare("gradient of the policy loss, all parameters", eq, torch.cat(our_grads),
                           torch.cat(their_grads), note=note))
    if objective.get("overlong_reward"):
        checks.append(_check_soft_overlong(plan, objective))
    if plan.recipe.dynamic_sampling and plan.recipe.dynamic_sampling.enabled.value:
        checks += _check_dynamic_sampling(recipe_name, sets, objective)
    if plan.recipe.exact_token_normaliser and plan.recipe.exact_token_normaliser.value:
        checks.append(_trl_normaliser_deviation(plan, trainer, updates, torch.stack(ours), gen, tokens))
    if objective.get("mismatch_correction"):  # TIS, IcePop, sequence-level IS: vLLM's correction, replayed (grpo-b)
        from paperrl.verify.importance_sampling import mismatch_checks

        checks += mismatch_checks(recipe_name, sets)
    return checks


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


def _window_loss(model, parts, objective, temperature, ref_model=None):
    """The paper's loss of one update: its micro-batches joined (padding to a common width)."""
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
    return ref_policy_loss(logps, old, completion_mask.float(), advantages, objective, MAX_LEN, ref)


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
