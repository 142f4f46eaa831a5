"""`paperrl verify`: does TRL compute the paper's objective for this recipe?

For each recipe the real TRL trainer is built on the embedded tiny model and fed a scenario written
by hand (below: completions, terminations, rewards, old log-probabilities), never sampled, that
exercises what the paper changes: ratios of 1, inside and beyond each clip range, completions of
different lengths, truncated completions, groups with equal and with different rewards. What TRL
computes (advantages, masks, loss, gradient with respect to every parameter, rewards, weight
averages) is compared with a reference implementation of the paper's equations written here in
plain torch, with the constants the paper states (the recipe's `objective` section), never with
TRL's code or the run's TRL settings. The weights only turn tokens into log-probabilities, which
both sides compute from the same weights: the verdicts do not depend on the machine.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import NamedTuple

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
    bound: float | None = None  # a known deviation: the recipe's max_relative

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


def ref_policy_loss(logps, old_logps, mask, advantages, objective: dict, max_len: int, ref_logps=None):
    """-(clipped surrogate); instead of the clip, SAPO's soft gate (4/tau) sigmoid(tau (r - 1)) A, tau by the sign
    of A, or CISPO's REINFORCE term with a capped, stop-gradient weight sg(min(r, cap)) A log pi; aggregated as the
    paper does (sequence_sum: LUSPO's per-sequence sum, each sequence weighted by its length). With `kl`, GRPO's
    KL penalty (DeepSeekMath Eq. 4: pi_ref/pi - log(pi_ref/pi) - 1 per token, times beta) is part of the loss."""
    r = ref_ratio(logps, old_logps, mask, objective["ratio"])
    a = advantages.unsqueeze(1)
    if "soft_gate" in objective:
        tau = torch.where(a > 0, *objective["soft_gate"])
        surrogate = (4 / tau * torch.sigmoid(tau * (r - 1)) * a).expand_as(logps)
    elif "is_cap" in objective:
        surrogate = torch.clamp(r, max=objective["is_cap"]).detach() * a * logps
    else:
        low, high = objective["clip"]
        surrogate = torch.minimum(r * a, torch.clamp(r, 1 - low, 1 + high) * a).expand_as(logps)
    if "kl" in objective:
        d = ref_logps - logps
        surrogate = surrogate - objective["kl"] * (torch.exp(d) - d - 1)
    how = objective["aggregation"]
    if how == "sequence_mean":
        per_seq = (surrogate * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return -per_seq.mean()
    if how == "sequence_sum":
        return -(surrogate * mask).sum(-1).mean()
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


class Pair(NamedTuple):
    """A batch of preference pairs: summed log-probabilities of the chosen (w) and rejected (l) responses under
    the policy, their log-ratios to the reference h = log pi/pi_ref, and their lengths n in tokens."""

    w: torch.Tensor
    l: torch.Tensor
    h_w: torch.Tensor
    h_l: torch.Tensor
    n_w: torch.Tensor
    n_l: torch.Tensor


_logsig = torch.nn.functional.logsigmoid


def _alphapo(x: Pair, p):  # AlphaPO Eq. 6, r(y) = (1 - pi(y)^(-alpha/|y|)) / alpha
    r_w, r_l = ((1 - torch.exp(-p["alpha"] * logp / n)) / p["alpha"] for logp, n in ((x.w, x.n_w), (x.l, x.n_l)))
    return -_logsig(p["beta"] * (r_w - r_l) - p["gamma"])


def _robust(x: Pair, p):  # rDPO: (1 - eps) L(y_w, y_l) - eps L(y_l, y_w), over 1 - 2 eps
    d, eps = p["beta"] * (x.h_w - x.h_l), p["epsilon"]
    return ((1 - eps) * -_logsig(d) + eps * _logsig(-d)) / (1 - 2 * eps)


def _exo(x: Pair, p):  # EXO: KL(p_theta || p_target) over the pair, p_theta = softmax(beta h), target (1 - eps, eps)
    q, eps = torch.sigmoid(p["beta"] * (x.h_w - x.h_l)), p["epsilon"]
    return q * torch.log(q / (1 - eps)) + (1 - q) * torch.log((1 - q) / eps)


def _discopop(x: Pair, p):  # DiscoPOP: logistic and exponential losses mixed by sigmoid(f / tau)
    f = p["beta"] * (x.h_w - x.h_l)
    mix = torch.sigmoid(f / p["tau"])
    return (1 - mix) * -_logsig(f) + mix * torch.exp(-f)


PREFERENCE_LOSSES = {
    "sigmoid": lambda x, p: -_logsig(p["beta"] * (x.h_w - x.h_l)),  # DPO Eq. 7
    "sigmoid_norm": lambda x, p: -_logsig(p["beta"] * (x.h_w / x.n_w - x.h_l / x.n_l)),  # per-token log-ratios
    "ipo": lambda x, p: (x.h_w / x.n_w - x.h_l / x.n_l - 1 / (2 * p["beta"])) ** 2,  # (h - 1/(2 tau))^2
    "robust": _robust,
    "exo": _exo,
    "nca": lambda x, p: -_logsig(p["beta"] * x.h_w) - _logsig(-p["beta"] * x.h_w) / 2 - _logsig(-p["beta"] * x.h_l) / 2,
    "apo_zero": lambda x, p: 1 - torch.sigmoid(p["beta"] * x.h_w) + torch.sigmoid(p["beta"] * x.h_l),
    "apo_down": lambda x, p: torch.sigmoid(p["beta"] * x.h_w) + 1 - torch.sigmoid(p["beta"] * (x.h_w - x.h_l)),
    "discopop": _discopop,
    "simpo": lambda x, p: -_logsig(p["beta"] * (x.w / x.n_w - x.l / x.n_l) - p["gamma"]),  # reference-free
    "alphapo": _alphapo,
    "sft": lambda x, p: -x.w.sum() / x.n_w.sum(),  # negative log-likelihood per token of the chosen responses
}
# f-DPO: the log-ratio h = log u replaced by f'(u) of the divergence
DIVERGENCES = {"reverse_kl": lambda h: h, "js_divergence": lambda h: math.log(2) + _logsig(h)}  # log(2u / (1 + u))


def ref_preference_loss(pol_w, pol_l, ref_w, ref_l, len_w, len_l, p, pair_weight=1.0):
    """The paper's loss, mean over the pairs (`PREFERENCE_LOSSES`), each pair's loss times `pair_weight` (WPO's
    w(y_w) w(y_l)); a list of losses is their weighted sum (RPO: DPO + eta x NLL; CPO: its preference term + NLL)."""
    if isinstance(p, list):
        return sum(q.get("weight", 1.0) * ref_preference_loss(pol_w, pol_l, ref_w, ref_l, len_w, len_l, q, pair_weight)
                   for q in p)
    f = DIVERGENCES[p.get("divergence", "reverse_kl")]
    pair = Pair(pol_w, pol_l, f(pol_w - ref_w), f(pol_l - ref_l), len_w, len_l)
    return (PREFERENCE_LOSSES[p["loss"]](pair, p) * pair_weight).mean()


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


def _plan(recipe_name: str, sets: list[str], dynamic_sampling: dict | None = None, **config):
    """The resolved recipe with the scenario's batch; dynamic sampling off unless given settings to merge in
    (it is verified on its own scenario, _check_dynamic_sampling)."""
    from paperrl import recipe as recipes
    from paperrl.resolve import Options, resolve

    plan = resolve(recipes.load(recipe_name, sets), Options(output_dir="/tmp/paperrl-verify"))
    plan.config.update(config)
    plan.config.pop("reward_weights", None)
    plan.dynamic_sampling = {**plan.dynamic_sampling, **dynamic_sampling} if dynamic_sampling else None
    return plan


def _trainer(plan, reward_funcs=(), rows=None):
    """The recipe's real TRL trainer on the embedded model; on `rows` when given, else on the demo task."""
    from datasets import Dataset

    from paperrl import data as datamod
    from paperrl.train import build_trainer

    demo.one_thread()
    demo.ensure_model()
    torch.manual_seed(SEED)
    data = datamod.load(plan) if rows is None else Dataset.from_list(rows)
    trainer = build_trainer(plan, data, list(reward_funcs))
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


def _perturb(model, scale=0.02):
    with torch.no_grad():
        rng = torch.Generator().manual_seed(SEED + 1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=rng) * scale)


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


# ---------------------------------------------------------------- checks per trainer kind


def _objective(recipe) -> dict:
    return {k: v.value for k, v in recipe.objective if v is not None}


def verify_grpo(recipe_name: str, sets: list[str]) -> list[Check]:
    # One rollout of 32 completions in 4 micro-batches of 8; 2 micro-batches per update (accumulation), so 2
    # updates per rollout: what the paper calls mini-batches, with accumulation inside each.
    ga, spg = 2, 4
    plan = _plan(recipe_name, sets, gradient_accumulation_steps=ga, steps_per_generation=spg,
                 per_device_train_batch_size=8, num_generations=GROUP, max_completion_length=MAX_LEN)
    objective = _objective(plan.recipe)
    scenario = _Scenario()
    trainer = _trainer(plan, [scenario])
    trainer.current_gradient_accumulation_steps = ga
    scenario.attach(trainer)
    reference = None
    if "kl" in objective:  # pi_ref: the embedded model as loaded (not TRL's copy); the policy moved away from it
        from transformers import AutoModelForCausalLM

        reference = AutoModelForCausalLM.from_pretrained(demo.model_dir()).eval()
        _perturb(trainer.model, KL_PERTURBATION)
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
    checks = [_compare(f"advantage ({objective['advantage']})", src.advantage.source,
                       ref_advantages(torch.tensor(REWARDS, dtype=torch.float32), GROUP, objective["advantage"]),
                       gen["advantages"])]

    if objective.get("overlong_filtering") is not None:
        lengths = torch.tensor([len(t) for t in COMPLETIONS], dtype=torch.float32)
        expected = torch.where(truncated() & objective["overlong_filtering"], 0.0, lengths)
        checks.append(_compare("overlong filtering: truncated completions get no loss", src.overlong_filtering.source,
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
        their_grads.append(_grads(model, their_loss))
        our_grads.append(_grads(model, our_loss))
        theirs.append(their_loss.detach())
        ours.append(our_loss.detach())
        tokens.append(int(sum(s["completion_mask"].sum() for s in parts)))
        updates.append(parts)
    if min(margins) < MIN_CLIP_MARGIN:
        raise AssertionError(f"verify scenario: a ratio lies {min(margins):.2g} from a clip edge")
    eq = "; ".join(getattr(src, k).source for k in ("ratio", "clip", "soft_gate", "is_cap", "aggregation", "kl")
                   if getattr(src, k))
    note = f"{len(windows)} updates of {ga} micro-batches, tokens per update {tokens}"
    checks.append(_compare("policy loss (ratio, clip, aggregation)", eq, torch.stack(ours), torch.stack(theirs),
                           note=note))
    checks.append(_compare("gradient of the policy loss, all parameters", eq, torch.cat(our_grads),
                           torch.cat(their_grads), note=note))
    if objective.get("overlong_reward"):
        checks.append(_check_soft_overlong(plan, objective))
    if plan.recipe.dynamic_sampling and plan.recipe.dynamic_sampling.enabled.value:
        checks += _check_dynamic_sampling(recipe_name, sets, objective)
    if plan.recipe.exact_token_normaliser and plan.recipe.exact_token_normaliser.value:
        checks.append(_trl_normaliser_deviation(plan, trainer, updates, torch.stack(ours), gen, tokens))
    return checks


def _check_dynamic_sampling(recipe_name: str, sets: list[str], objective: dict) -> list[Check]:
    """DAPO §3.2 on the scenario: a rollout of 8 groups whose first 2 have equal rewards. Round 1 keeps groups
    2-7; each later round asks for the 2 missing groups, and the scenario hands out its next ones: round 2
    groups 0-1 (dropped), round 3 groups 2-3 (kept). The advantages must be the paper's over the kept groups."""
    plan = _plan(recipe_name, sets, dynamic_sampling={"metric": "reward", "oversample": 1.0, "max_rounds": 10},
                 gradient_accumulation_steps=1, steps_per_generation=4, per_device_train_batch_size=8,
                 num_generations=GROUP, max_completion_length=MAX_LEN)
    scenario = _Scenario()
    trainer = _trainer(plan, [scenario])
    scenario.attach(trainer)
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    kept_groups = [2, 3, 4, 5, 6, 7, 2, 3]
    expected = torch.tensor([float(REWARDS[g * GROUP + i]) for g in kept_groups for i in range(GROUP)])
    rollout = trainer.last_rollout
    src = plan.recipe.dynamic_sampling
    note = (f"{rollout['rounds']} rounds, {rollout['kept']} of {rollout['need']} groups kept; filtered on the "
            "scenario's reward, which stands in for the accuracy")
    return [
        _compare("dynamic sampling: the kept groups are the informative ones, in order", src.enabled.source,
                 expected, rollout["rewards_per_func"][:, 0], note=note),
        _compare(f"dynamic sampling: advantage ({objective['advantage']}) over the kept groups",
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
    check = _compare("TRL's own dapo normaliser (without paperrl's exact_token_normaliser)",
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
    return _compare("soft overlong punishment", plan.recipe.objective.overlong_reward.source,
                    ref_soft_overlong(lengths, l_max, l_cache), theirs)


def verify_rloo(recipe_name: str, sets: list[str]) -> list[Check]:
    # The scenario's first 4 groups: one rollout of 16 completions in 2 mini-batches of 8.
    plan = _plan(recipe_name, sets, gradient_accumulation_steps=1, steps_per_generation=2,
                 per_device_train_batch_size=8, num_generations=GROUP, max_completion_length=MAX_LEN)
    beta = _objective(plan.recipe)["kl_in_reward"]
    scenario = _Scenario()
    trainer = _trainer(plan, [scenario])
    trainer.current_gradient_accumulation_steps = 1
    scenario.attach(trainer)
    _perturb(trainer.model)  # so that the policy differs from the reference and the KL term is not zero
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
    checks = [_compare("advantage: leave-one-out baseline, KL in the reward",
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
    checks.append(_compare("REINFORCE gradient, on-policy", eq, _grads(model, ours_on), _grads(model, theirs_on)))
    shift = torch.tensor([0.5, -0.5, 0.3, -0.4] * 4)[: mask.shape[0]]
    weights = torch.exp(shift)
    theirs_off = trainer._compute_loss(model, {**inputs, "old_logps": seq_logps - shift})
    ours_off = -(inputs["advantages"] * weights * (ref_token_logps(model, *args) * mask).sum(-1)).mean()
    checks.append(_compare("REINFORCE gradient, off-policy mini-batch (importance-weighted, unclipped)", eq,
                           _grads(model, ours_off), _grads(model, theirs_off),
                           note="sequence ratios e^0.5, e^-0.5, e^0.3, e^-0.4: TRL's default epsilon 0.2 would clip "
                                "them; the recipe sets epsilon beyond reach"))
    return checks


def _token_logps(model, input_ids, attention_mask):
    """log pi of each next token, and log pi over the vocabulary at each position."""
    logp = torch.log_softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float(), -1)
    return logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1), logp


def ref_desensitised_logps(token_logps, mask, alpha: float = 1.0):
    """log pi(y) of each response, rows chosen then rejected; LD-DPO (alpha < 1): log pi(y_1:l_p) + alpha log
    pi(y_l_p+1:l | y_1:l_p), l_p the shorter response's length in its pair, so only the longer one's excess counts less."""
    lengths = mask.sum(-1)
    n = len(lengths) // 2
    shared = torch.minimum(lengths[:n], lengths[n:]).repeat(2)
    prefix = mask * (mask.cumsum(-1) <= shared.unsqueeze(-1))
    return (token_logps * prefix).sum(-1) + alpha * (token_logps * (mask - prefix)).sum(-1)


def ref_wpo_weights(token_logps, logp, mask):
    """WPO Eq. 2 with weight alignment: w(y) = exp(mean_t log(pi(y_t) / sum_v pi(v)^2)), a constant (no gradient)."""
    with torch.no_grad():
        aligned = token_logps - torch.logsumexp(2 * logp, -1)
        return torch.exp((aligned * mask).sum(-1) / mask.sum(-1).clamp(min=1))


# Preference pairs written by hand, one batch: the chosen answer shorter, longer or as long as the rejected one, so
# that length normalisation (IPO, SimPO, Tulu 3) and LD-DPO's shared prefix are exercised.
PREFERENCE_PAIRS = [("12+7=", "19", "9"), ("3+4=", "7", "71"), ("25+25=", "50", "5"), ("9+9=", "18", "108"),
                    ("31+12=", "43", "34"), ("8+1=", "9", "10"), ("47+38=", "85", "815"), ("6+60=", "66", "6")]


def verify_preference(recipe_name: str, sets: list[str]) -> list[Check]:
    plan = _plan(recipe_name, sets, per_device_train_batch_size=len(PREFERENCE_PAIRS))
    preference = _objective(plan.recipe)["preference"]
    options = preference if isinstance(preference, dict) else {}
    trainer = _trainer(plan, rows=[dict(zip(("prompt", "chosen", "rejected"), p)) for p in PREFERENCE_PAIRS])
    _perturb(trainer.model)  # policy != reference
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model = trainer.model
    theirs = trainer.compute_loss(model, batch)
    their_grad = _grads(model, theirs)
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
    checks = VERIFIERS[recipe.trainer](recipe_name, sets)
    if not checks:  # a verifier that checks nothing must not read as a pass
        checks = [Check("the recipe's objective", "", float("inf"), 0.0, note="no check was run")]
    from paperrl.verify_pipeline import verify_pipeline  # the rest of the pipeline: data, verifier, batch, schedule

    return checks + verify_pipeline(recipe_name, sets)


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
        for col in ("check", "paper", "max |diff|", "relative", "tolerance", "bound", "result"):
            table.add_column(col, overflow="fold")
        for c in checks:
            colour = {"PASS": "green", "FAIL": "red"}.get(c.status, "yellow")
            table.add_row(c.check + (f"\n[dim]{c.note}[/dim]" if c.note else ""), c.equation, f"{c.max_abs_diff:.3g}",
                          f"{c.relative:.1%}", f"{c.tolerance:.3g}",
                          f"{c.bound:.0%}" if c.bound is not None else "", f"[{colour}]{c.status}[/{colour}]")
        console.print(table)
