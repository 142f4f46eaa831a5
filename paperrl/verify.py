"""`paperrl verify`: does TRL compute the paper's objective for this recipe?

For each recipe the real TRL trainer is built on the embedded tiny model and fed a fixed, seeded
batch that exercises what the paper changes: off-policy old log-probabilities (ratios != 1, some
beyond the clip range), completions of different lengths, truncated completions, groups with
equal and with different rewards. What TRL computes (advantages, loss, gradient with respect to
every parameter, masks, rewards, weight averages) is compared with a reference implementation of
the paper's equations written here in plain torch, with the constants the paper states (the
recipe's `objective` section), never with TRL's code or the run's TRL settings.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import asdict, dataclass

import torch

from paperrl import demo
from paperrl.errors import PaperrlError

SEED = 1234
EPS = 1e-4  # numerical guard of the std division (zero-variance groups), as in every implementation


@dataclass
class Check:
    check: str
    equation: str
    max_abs_diff: float
    tolerance: float
    status: str = ""
    note: str = ""
    relative: float = 0.0  # max |diff| / max |paper's value|

    def __post_init__(self):
        if not self.status:
            self.status = "PASS" if self.max_abs_diff <= self.tolerance else "FAIL"


# ---------------------------------------------------------------- reference implementations (the papers)


def ref_token_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature=1.0):
    """log pi(o_t | q, o_<t) of the sampling policy (logits / temperature), one per completion token."""
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, prompt_ids.shape[1] - 1:-1].float() / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


def ref_advantages(rewards: torch.Tensor, group: int, kind: str) -> torch.Tensor:
    """group: (r - mean_g) / std_g;  batch: (r - mean_g) / std_batch;  none: r - mean_g;
    leave_one_out: r_i - mean of the other k - 1 rewards of its group."""
    g = rewards.view(-1, group)
    if kind == "leave_one_out":
        return (g - (g.sum(dim=1, keepdim=True) - g) / (group - 1)).view(-1)
    centred = g - g.mean(dim=1, keepdim=True)
    if kind == "group":
        return (centred / (g.std(dim=1, keepdim=True) + EPS)).view(-1)
    if kind == "batch":
        return (centred / (rewards.std() + EPS)).view(-1)
    if kind == "none":
        return centred.view(-1)
    raise ValueError(kind)


def ref_ratio(logps, old_logps, mask, level: str):
    """token: r_t = pi/pi_old;  sequence: s_i = exp(mean_t log(pi/pi_old)) (GSPO Eq. 7)."""
    log_ratio = logps - old_logps
    if level == "token":
        return torch.exp(log_ratio)
    return torch.exp((log_ratio * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1))


def ref_policy_loss(logps, old_logps, mask, advantages, objective: dict, max_len: int):
    """-(clipped surrogate), aggregated as the paper does."""
    r = ref_ratio(logps, old_logps, mask, objective["ratio"])
    low, high = objective["clip"]
    a = advantages.unsqueeze(1)
    surrogate = torch.minimum(r * a, torch.clamp(r, 1 - low, 1 + high) * a).expand_as(logps)
    how = objective["aggregation"]
    if how == "sequence_mean":
        per_seq = (surrogate * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return -per_seq.mean()
    if how == "token_mean":
        return -(surrogate * mask).sum() / mask.sum().clamp(min=1)
    if how == "constant":
        return -(surrogate * mask).sum() / (mask.shape[0] * max_len)
    raise ValueError(how)


def ref_reinforce_loss(logps, mask, advantages):
    """RLOO §3: -1/k sum_i A_i log pi(y_i): REINFORCE, no ratio, no clipping."""
    return -(advantages * (logps * mask).sum(-1)).mean()


def ref_soft_overlong(lengths, l_max: int, l_cache: int) -> torch.Tensor:
    """DAPO Eq. 13."""
    out = []
    for n in lengths:
        if n <= l_max - l_cache:
            out.append(0.0)
        elif n <= l_max:
            out.append(((l_max - l_cache) - n) / l_cache)
        else:
            out.append(-1.0)
    return torch.tensor(out)


def ref_preference_loss(pol_w, pol_l, ref_w, ref_l, len_w, len_l, p: dict):
    """DPO Eq. 7, or AlphaPO Eq. 6 with r(y) = (1 - pi(y)^(-alpha/|y|)) / alpha."""
    if p["loss"] == "sigmoid":
        margin = p["beta"] * ((pol_w - ref_w) - (pol_l - ref_l))
        return -torch.nn.functional.logsigmoid(margin).mean()
    alpha = p["alpha"]
    r_w = (1 - torch.exp(-alpha * pol_w / len_w)) / alpha
    r_l = (1 - torch.exp(-alpha * pol_l / len_l)) / alpha
    return -torch.nn.functional.logsigmoid(p["beta"] * (r_w - r_l) - p["gamma"]).mean()


def ref_bema(thetas: list[torch.Tensor], a: dict, update_freq: int) -> torch.Tensor:
    """BEMA Algorithm 1 with tau = 0: theta_0 = thetas[0]; EMA and bias correction every update_freq steps."""
    theta0, ema, out = thetas[0], thetas[0].clone(), thetas[0].clone()
    for t in range(1, len(thetas)):
        if t % update_freq:
            continue
        base = a["lag"] + a["multiplier"] * t
        beta = max(base ** -a["ema_power"], a["min_ema_multiplier"])
        ema = (1 - beta) * ema + beta * thetas[t]
        out = ema + base ** -a["bias_power"] * (thetas[t] - theta0)
    return out


# ---------------------------------------------------------------- building the real trainer


def _plan(recipe_name: str, sets: list[str], **config):
    from paperrl import recipe as recipes
    from paperrl.resolve import Options, resolve

    plan = resolve(recipes.load(recipe_name, sets), Options(output_dir="/tmp/paperrl-verify"))
    plan.config.update(config)
    plan.config.pop("reward_weights", None)
    plan.dynamic_sampling = None  # verified separately (tests/test_sampling.py); TRL's objective here
    return plan


def _trainer(plan, reward_funcs=()):
    from paperrl import data as datamod
    from paperrl.train import build_trainer

    demo.ensure_model()
    torch.manual_seed(SEED)
    trainer = build_trainer(plan, datamod.load(plan), list(reward_funcs))
    trainer.model.train()
    return trainer


def _grads(model, loss) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad.flatten() for p in model.parameters() if p.requires_grad and p.grad is not None]
    out = torch.cat(grads) if grads else torch.zeros(1)
    model.zero_grad(set_to_none=True)
    return out


def _compare(name, equation, ours: torch.Tensor, theirs: torch.Tensor, rel=1e-4, note="") -> Check:
    diff = (ours.detach().float() - theirs.detach().float()).abs().max().item() if ours.numel() else 0.0
    scale = max(ours.detach().abs().max().item(), 1e-6)
    return Check(name, equation, diff, 1e-6 + rel * scale, note=note, relative=diff / scale)


class _TableReward:
    """Rewards fixed in advance: some groups all equal, some varied (what GRPO's advantage must handle)."""

    __name__ = "table_reward"

    def __init__(self, group: int):
        self.group = group

    def __call__(self, completions, **kwargs):
        n = len(completions)
        rng = torch.Generator().manual_seed(SEED)
        values = torch.randint(0, 3, (n,), generator=rng).float()
        values.view(-1, self.group)[0] = 1.0  # first group: every answer scores the same
        return values.tolist()


def _perturb(model, scale=0.02):
    with torch.no_grad():
        rng = torch.Generator().manual_seed(SEED + 1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=rng) * scale)


# ---------------------------------------------------------------- checks per trainer kind


def _objective(recipe) -> dict:
    return {k: v.value for k, v in recipe.objective if v is not None}


def verify_grpo(recipe_name: str, sets: list[str]) -> list[Check]:
    # The scenario: one update of a rollout split in 4 mini-batches of 1 micro-batch each.
    plan = _plan(recipe_name, sets, gradient_accumulation_steps=1, steps_per_generation=4,
                 per_device_train_batch_size=8, num_generations=4, max_completion_length=4, temperature=3.0)
    objective = _objective(plan.recipe)
    g = plan.config["num_generations"]
    trainer = _trainer(plan, [_TableReward(g)])
    trainer.args.max_completion_length = plan.config["max_completion_length"]
    trainer.current_gradient_accumulation_steps = 1
    generate = trainer._generate_and_score_completions

    def capture(rows):  # keep the rollout in generation order (TRL shuffles it before splitting)
        out = generate(rows)
        trainer._paperrl_last_generation = {k: v.clone() for k, v in out.items() if torch.is_tensor(v)}
        return out

    trainer._generate_and_score_completions = capture
    batch = next(iter(trainer.get_train_dataloader()))
    torch.manual_seed(SEED)
    first = trainer._prepare_inputs(batch)  # generation, scoring, advantages, buffering (and paperrl's subclasses)
    slices = trainer._buffered_inputs
    checks = []

    # Advantages: TRL's (over the whole rollout) against the paper's, from the same rewards.
    rewards = torch.tensor(_TableReward(g)(completions=[None] * len(batch)))
    gen = trainer._paperrl_last_generation
    checks.append(_compare(f"advantage ({objective['advantage']})", plan.recipe.objective.advantage.source,
                           ref_advantages(rewards, g, objective["advantage"]), gen["advantages"]))

    if objective.get("overlong_filtering") is not None:
        truncated = ~(gen["completion_ids"] == trainer.processing_class.eos_token_id).any(dim=1)
        left = (gen["completion_mask"].sum(dim=1)[truncated]).float()
        expected = torch.zeros_like(left) if objective["overlong_filtering"] else left
        ok = truncated.any() and (~truncated).any()
        checks.append(Check("overlong filtering: truncated completions get no loss",
                            plan.recipe.objective.overlong_filtering.source,
                            (left - expected).abs().max().item() if ok else float("inf"), 0.0,
                            note=f"{int(truncated.sum())} of {len(truncated)} completions truncated"))

    # Loss and gradient on the first mini-batch, with off-policy old log-probabilities.
    model = trainer.model
    inputs = dict(first)
    mask = inputs["completion_mask"].float()
    with torch.no_grad():
        current = ref_token_logps(model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
                                  inputs["completion_mask"], plan.config.get("temperature", 1.0))
    # log pi - log pi_old per token: ratios of 1, just inside and beyond each clip range; the first token of
    # every positively rewarded completion gets r = e^0.22 = 1.25, between 1 + 0.2 and 1 + 0.28 (clip-higher)
    shifts = torch.tensor([0.0, 1e-4, -2e-4, 0.05, -0.1, 0.22, 0.25, -0.3])
    rows, cols = torch.meshgrid(torch.arange(current.shape[0]), torch.arange(current.shape[1]), indexing="ij")
    offset = shifts[(rows + cols) % len(shifts)]
    offset[:, 0] = torch.where(inputs["advantages"] > 0, 0.22, offset[:, 0])
    inputs["old_per_token_logps"] = current - offset  # ratios of 1, just inside and beyond the clip range
    theirs = trainer._compute_loss(model, inputs)
    their_grad = _grads(model, theirs)
    logps = ref_token_logps(model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
                            inputs["completion_mask"], plan.config.get("temperature", 1.0))
    ours = ref_policy_loss(logps, inputs["old_per_token_logps"], mask, inputs["advantages"], objective,
                           plan.config["max_completion_length"])
    our_grad = _grads(model, ours)
    eq = "; ".join(getattr(plan.recipe.objective, k).source for k in ("ratio", "clip", "aggregation"))
    lengths = [int(s["completion_mask"].sum()) for s in slices]
    note = f"mini-batch token counts {lengths}"
    checks.append(_compare("policy loss (ratio, clip, aggregation)", eq, ours, theirs, note=note))
    checks.append(_compare("gradient of the policy loss, all parameters", eq, our_grad, their_grad, note=note))
    if objective.get("overlong_reward"):
        checks.append(_check_soft_overlong(plan, objective))
    if plan.recipe.exact_token_normaliser and plan.recipe.exact_token_normaliser.value:
        trl_own = trainer._compute_loss(model, {**inputs, "num_items_in_batch": gen["completion_mask"].sum()})
        dev = _compare("TRL's own dapo normaliser, without paperrl's exact_token_normaliser",
                       plan.recipe.objective.aggregation.source, ours, trl_own, note=note)
        if dev.status == "FAIL":
            dev.status = "KNOWN DEVIATION"
            dev.note = ("TRL divides by the rollout's tokens x accumulation / steps_per_generation, exact only when "
                        f"every mini-batch holds as many tokens ({note}); paperrl's subclass fixes it (rows above)")
        checks.append(dev)
    return checks


def _check_soft_overlong(plan, objective) -> Check:
    from paperrl import rewards as rewardmod

    l_max, l_cache = objective["overlong_reward"]  # the paper's, not the demo run's scaled-down ones
    fn = rewardmod.build([{"name": "soft_overlong_punishment", "weight": 1.0,
                           "args": {"max_completion_len": l_max, "soft_punish_cache": l_cache}}])[0][0]
    lengths = [l_max - l_cache - 1, l_max - l_cache, l_max - l_cache + 1, l_max - l_cache // 2, l_max, l_max + 1]
    theirs = torch.tensor(fn(completion_ids=[[0] * n for n in lengths]), dtype=torch.float32)
    return _compare("soft overlong punishment", plan.recipe.objective.overlong_reward.source,
                    ref_soft_overlong(lengths, l_max, l_cache), theirs)


def verify_rloo(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = _plan(recipe_name, sets, gradient_accumulation_steps=1, steps_per_generation=2,
                 per_device_train_batch_size=8, num_generations=4, max_completion_length=3)
    beta = _objective(plan.recipe)["kl_in_reward"]
    g = plan.config["num_generations"]
    trainer = _trainer(plan, [_TableReward(g)])
    trainer.current_gradient_accumulation_steps = 1
    _perturb(trainer.model)  # so that the policy differs from the reference and the KL term is not zero
    batch = next(iter(trainer.get_train_dataloader()))
    torch.manual_seed(SEED)
    out = trainer._generate_and_score_completions(batch)
    model, ref = trainer.model, trainer.ref_model
    with torch.no_grad():
        args = (out["prompt_ids"], out["prompt_mask"], out["completion_ids"], out["completion_mask"],
                plan.config.get("temperature", 1.0))
        mask = out["completion_mask"].float()
        kl = ((ref_token_logps(model, *args) - ref_token_logps(ref, *args)) * mask).sum(-1)
    rewards = torch.tensor(_TableReward(g)(completions=[None] * len(batch))) - beta * kl
    checks = [_compare("advantage: leave-one-out baseline, KL in the reward",
                       f"{plan.recipe.objective.advantage.source}; {plan.recipe.objective.kl_in_reward.source}",
                       ref_advantages(rewards, g, "leave_one_out"), out["advantages"], rel=1e-3)]
    # TRL's loss is PPO-clipped; the paper's REINFORCE is not. Equal on-policy, not off-policy.
    inputs = dict(out)
    logps = ref_token_logps(model, *args)
    theirs_on = trainer._compute_loss(model, {**inputs, "old_logps": (logps.detach() * mask).sum(-1)})
    grad_on = _grads(model, theirs_on)
    ours_grad = _grads(model, ref_reinforce_loss(ref_token_logps(model, *args), mask, inputs["advantages"]))
    checks.append(_compare("REINFORCE gradient, on-policy", plan.recipe.objective.ratio.source, ours_grad, grad_on))
    shifted = (logps.detach() * mask).sum(-1) - torch.tensor([0.5, -0.5, 0.3, -0.4] * 8)[: mask.shape[0]]
    grad_off = _grads(model, trainer._compute_loss(model, {**inputs, "old_logps": shifted}))
    weights = torch.exp((logps.detach() * mask).sum(-1) - shifted)
    ours_off = _grads(model, -(inputs["advantages"] * weights * (ref_token_logps(model, *args) * mask).sum(-1)).mean())
    eq = plan.recipe.objective.ratio.source
    checks.append(_compare("REINFORCE gradient, off-policy mini-batch (importance-weighted, unclipped)", eq,
                           ours_off, grad_off))
    low, high = trainer.epsilon_low, trainer.epsilon_high
    trainer.epsilon_low = trainer.epsilon_high = 0.2  # TRL's default clip range
    grad_default = _grads(model, trainer._compute_loss(model, {**inputs, "old_logps": shifted}))
    trainer.epsilon_low, trainer.epsilon_high = low, high
    dev = _compare("TRL's default RLOO clip (epsilon 0.2), without the recipe's setting", eq, ours_off, grad_default)
    if dev.status == "FAIL":
        dev.status = "KNOWN DEVIATION"
        dev.note = ("TRL clips RLOO's sequence ratio at 1 +/- 0.2 (PPO); the paper's REINFORCE does not. Identical "
                    "on-policy; differs on the second mini-batch of a rollout. The recipe sets epsilon beyond reach")
    checks.append(dev)
    return checks


def _sequence_logps(model, input_ids, attention_mask, completion_mask):
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    token = torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    m = completion_mask[:, 1:].float()
    return (token * m).sum(-1), m.sum(-1)


def verify_preference(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = _plan(recipe_name, sets, per_device_train_batch_size=8)
    objective = _objective(plan.recipe)
    trainer = _trainer(plan)
    _perturb(trainer.model)  # policy != reference
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model = trainer.model
    theirs = trainer.compute_loss(model, batch)
    their_grad = _grads(model, theirs)
    if "input_ids" in batch:  # DPO: chosen rows first, then rejected
        ids, att, cm = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        pol, lens = _sequence_logps(model, ids, att, cm)
        with torch.no_grad():
            ref, _ = _sequence_logps(trainer.ref_model, ids, att, cm)
        n = ids.shape[0] // 2
        parts = (pol[:n], pol[n:], ref[:n], ref[n:], lens[:n], lens[n:])
    else:  # CPO: separate chosen/rejected tensors, labels -100 on the prompt
        def side(key):
            ids, att, labels = batch[f"{key}_input_ids"], batch[f"{key}_attention_mask"], batch[f"{key}_labels"]
            return _sequence_logps(model, ids, att, (labels != -100).long())

        (pw, lw), (pl, ll) = side("chosen"), side("rejected")
        parts = (pw, pl, torch.zeros_like(pw), torch.zeros_like(pl), lw, ll)
    ours = ref_preference_loss(*parts, objective["preference"])
    our_grad = _grads(model, ours)
    eq = plan.recipe.objective.preference.source
    return [_compare("preference loss", eq, ours, theirs), _compare("gradient of the preference loss", eq, our_grad,
                                                                      their_grad)]


def verify_averaging(recipe_name: str, sets: list[str]) -> list[Check]:
    from paperrl.callbacks import BEMA
    from paperrl.resolve import Options, resolve
    from paperrl import recipe as recipes

    plan = resolve(recipes.load(recipe_name, sets), Options(model="m", output_dir="/tmp/paperrl-verify"))
    args = dict(plan.callbacks[0]["args"])
    a = _objective(plan.recipe)["averaging"]
    freq = 3
    args["update_freq"] = freq
    rng = torch.Generator().manual_seed(SEED)
    thetas = [torch.zeros(5)]
    for _ in range(12):
        thetas.append(thetas[-1] + torch.randn(5, generator=rng))
    param = torch.nn.Parameter(thetas[0].clone())
    model = torch.nn.Module()
    model.w = param
    cb = BEMA(**args)
    state = type("S", (), {"global_step": 0, "is_world_process_zero": True})()
    cb.on_train_begin(None, state, None, model=model)
    for t in range(1, len(thetas)):
        with torch.no_grad():
            param.copy_(thetas[t])
        state.global_step = t
        cb.on_step_end(None, state, None)
    eq = plan.recipe.objective.averaging.source
    return [_compare("BEMA weights after 12 steps (paperrl's callback)", eq, ref_bema(thetas, a, freq), cb.bema["w"])]


VERIFIERS = {"grpo": verify_grpo, "rloo": verify_rloo, "dpo": verify_preference, "cpo": verify_preference,
             "sft": verify_averaging}


def verify(recipe_name: str, sets: list[str]) -> list[Check]:
    from paperrl import recipe as recipes

    recipe = recipes.load(recipe_name, sets)
    if not any(v is not None for _, v in recipe.objective):
        raise PaperrlError(f"{recipe_name}: the recipe states no `objective`; nothing to verify")
    return VERIFIERS[recipe.trainer](recipe_name, sets)


def main(recipe: str | None, all_: bool, sets: list[str], fmt: str) -> int:
    from paperrl import recipe as recipes

    if fmt not in ("table", "json"):
        raise PaperrlError(f"--format {fmt}: accepted: table, json")
    if all_ == (recipe is not None):
        raise PaperrlError("paperrl verify: give one RECIPE or --all")
    names = list(recipes.available()) if all_ else [recipe]
    _quiet()
    results = {name: verify(name, sets) for name in names}
    ok = all(c.status != "FAIL" for checks in results.values() for c in checks)
    if fmt == "json":
        sys.stdout.write(json.dumps({n: [asdict(c) for c in cs] for n, cs in results.items()}, indent=2) + "\n")
    else:
        _print(results)
    return 0 if ok else 1


def _quiet():
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    logging.getLogger("trl").setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def _print(results):
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 180)
    for name, checks in results.items():
        table = Table(title=f"paperrl verify {name}", show_lines=False)
        for col in ("check", "paper", "max |diff|", "relative", "tolerance", "result"):
            table.add_column(col, overflow="fold")
        for c in checks:
            colour = {"PASS": "green", "FAIL": "red"}.get(c.status, "yellow")
            table.add_row(c.check + (f"\n[dim]{c.note}[/dim]" if c.note else ""), c.equation, f"{c.max_abs_diff:.3g}",
                          f"{c.relative:.1%}", f"{c.tolerance:.3g}", f"[{colour}]{c.status}[/{colour}]")
        console.print(table)
