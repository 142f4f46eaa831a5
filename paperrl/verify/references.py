"""The papers' objectives, written from their equations in plain torch: no TRL code, no TRL settings.

`paperrl verify` compares what TRL computes with these. Each function is checked on examples worked by
hand in tests/test_verify.py.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

EPS = 1e-4  # numerical guard of the std division (zero-variance groups), as in every implementation

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
    """token: r_t = pi/pi_old;  sequence: s_i = exp(mean_t log(pi/pi_old)) (GSPO Eq. 7);
    sequence_product: W_i = prod_t pi/pi_old, the sequence's own importance weight (VESPO, no length normalisation)."""
    log_ratio = logps - old_logps
    if level == "token":
        return torch.exp(log_ratio)
    if level == "sequence_product":
        return torch.exp((log_ratio * mask).sum(-1, keepdim=True))
    return torch.exp((log_ratio * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1))


def ref_policy_loss(logps, old_logps, mask, advantages, objective: dict, max_len: int, ref_logps=None, keep=None):
    """-(clipped surrogate); instead of the clip, SAPO's soft gate (4/tau) sigmoid(tau (r - 1)) A, tau by the sign
    of A, CISPO's REINFORCE term with a capped, stop-gradient weight sg(min(r, cap)) A log pi, or VESPO's REINFORCE
    term weighted by sg(phi(W)); aggregated as the paper does (sequence_sum: LUSPO's per-sequence sum, each sequence
    weighted by its length). INTELLECT-2's `ratio_cap` caps the unclipped ratio at delta (two-sided clipping);
    V3.2's `off_policy_mask` drops the surrogate of off-policy sequences with A < 0; `keep` (0/1 per token, 80/20's
    high-entropy tokens) restricts the surrogate to some tokens. With `kl`, GRPO's KL penalty (DeepSeekMath Eq. 4:
    pi_ref/pi - log(pi_ref/pi) - 1 per token, times beta; times pi/pi_old with V3.2's `kl_weighting: ratio`) is part
    of the loss, neither masked nor clipped."""
    r = ref_ratio(logps, old_logps, mask, objective["ratio"])
    a = advantages.unsqueeze(1)
    if "soft_gate" in objective:
        tau = torch.where(a > 0, *objective["soft_gate"])
        surrogate = (4 / tau * torch.sigmoid(tau * (r - 1)) * a).expand_as(logps)
    elif "is_cap" in objective:
        surrogate = torch.clamp(r, max=objective["is_cap"]).detach() * a * logps
    elif "vespo" in objective:
        surrogate = ref_vespo_weight(r, a, objective["vespo"]).detach() * a * logps
    else:
        low, high = objective["clip"]
        unclipped = torch.clamp(r, max=objective["ratio_cap"]) if "ratio_cap" in objective else r
        surrogate = torch.minimum(unclipped * a, torch.clamp(r, 1 - low, 1 + high) * a).expand_as(logps)
    if "off_policy_mask" in objective:
        surrogate = surrogate * ref_off_policy_mask(logps, old_logps, mask, advantages, objective["off_policy_mask"])
    if "entropy_mask" in objective:
        if keep is None:
            raise ValueError("an entropy-masked objective needs the kept tokens (ref_entropy_mask)")
        surrogate = surrogate * keep
    if "kl" in objective:
        d = ref_logps - logps
        k3 = torch.exp(d) - d - 1
        if objective.get("kl_weighting") == "ratio":
            k3 = torch.exp(logps - old_logps) * k3
        surrogate = surrogate - objective["kl"] * k3
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


def ref_vespo_weight(w, advantages, kp):
    """VESPO §3.4: phi(W) = W^c1 exp(c2 (1 - W)), phi(1) = 1; (c1, c2) = (k_pos, lambda_pos) for A >= 0, else
    (k_neg, lambda_neg). `kp` = [k_pos, lambda_pos, k_neg, lambda_neg]."""
    k_pos, lam_pos, k_neg, lam_neg = kp
    k = torch.where(advantages >= 0, k_pos, k_neg)
    lam = torch.where(advantages >= 0, lam_pos, lam_neg)
    return w ** k * torch.exp(lam * (1 - w))


def ref_off_policy_mask(logps, old_logps, mask, advantages, delta: float):
    """DeepSeek-V3.2: M_i = 0 if A_i < 0 and 1/|o_i| sum_t log(pi_old/pi) > delta, else 1 (one value per sequence)."""
    drift = ((old_logps - logps.detach()) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return (~((advantages < 0) & (drift > delta))).float().unsqueeze(1)


def ref_token_entropies(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature=1.0):
    """H_t = -sum_v pi(v | q, o_<t) log pi(v | q, o_<t), the entropy of the sampling distribution at each position."""
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, prompt_ids.shape[1] - 1:-1].float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def ref_entropy_mask(entropies, mask, rho: float):
    """80/20: I[H_t >= tau], tau the (1 - rho)-quantile of the entropies of all response tokens given (the batch)."""
    tau = torch.quantile(entropies[mask > 0].float(), 1 - rho)
    return ((entropies >= tau) & (mask > 0)).float()


def ref_gdpo_advantages(rewards: torch.Tensor, weights, group: int) -> torch.Tensor:
    """GDPO: each reward normalised in its group, A_n = (r_n - mean_g) / (std_g + eps); their weighted sum
    A = sum_n w_n A_n; then over the whole batch (A - mean A) / (std A + eps). `rewards`: (completions, rewards)."""
    g = rewards.view(-1, group, rewards.shape[1])
    a_n = ((g - g.mean(dim=1, keepdim=True)) / (g.std(dim=1, keepdim=True) + EPS)).view(-1, rewards.shape[1])
    a = (a_n * torch.as_tensor(weights, dtype=rewards.dtype)).sum(dim=1)
    return (a - a.mean()) / (a.std() + EPS)


def ref_entropy_coefficients(entropies, control: dict) -> tuple[list[float], list[float]]:
    """Skywork-OR1's adaptive entropy control over optimizer steps with measured entropies e_0, e_1, ...: the bonus
    coefficient applied at step k, alpha_k = c_k 1[e_(k-1) <= target] (none at the first step, nothing measured yet),
    and c after step k, c_(k+1) = clip(c_k + delta, min, max) if e_k <= target else clip(c_k - delta, min, max)."""
    c, applied, after, last = control["initial"], [], [], math.inf
    for e in entropies:
        applied.append(c if last <= control["target"] else 0.0)
        c = min(c + control["delta"], control["max"]) if e <= control["target"] else max(c - control["delta"],
                                                                                         control["min"])
        after.append(c)
        last = e
    return applied, after


def ref_cosine_reward(lengths, correct, spec: dict) -> torch.Tensor:
    """Demystifying Long CoT §4.2: CosFn(L, L_max, r_L, r_0) = r_L + (r_0 - r_L)(1 + cos(pi L / L_max)) / 2 with
    [r_0, r_L] by correctness; r_e for a generation that reaches L_max (when the paper's reward has one)."""
    out = []
    for n, ok in zip(lengths, correct):
        if spec.get("exceed") is not None and n >= spec["l_max"]:
            out.append(spec["exceed"])
            continue
        r0, rl = spec["correct"] if ok else spec["wrong"]
        out.append(rl + 0.5 * (r0 - rl) * (1 + math.cos(math.pi * min(n, spec["l_max"]) / spec["l_max"])))
    return torch.tensor(out, dtype=torch.float64)


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


def _bco_pair(x: Pair, p):
    """BCO on pairs: -log sigma(r_w - delta) - log sigma(-(r_l - delta)), r = beta log pi/pi_ref; delta, the reward shift,
    is a running mean of the rewards, a constant (no gradient). On a first batch it is that batch's mean reward,
    (mean r_w + mean r_l) / 2. `reward_shift: false` is delta = 0."""
    r_w, r_l = p["beta"] * x.h_w, p["beta"] * x.h_l
    delta = torch.cat([r_w, r_l]).mean().detach() if p.get("reward_shift", True) else 0.0
    return -_logsig(r_w - delta) - _logsig(-(r_l - delta))


def _aot(x: Pair, p):
    """AOT, paired: the policy's margin log pi(y_w) - log pi(y_l) must dominate the reference's in distribution
    (first order, by 1-D optimal transport): the i-th smallest of each over the batch, -log sigma(beta (q_i - q'_i))."""
    ref_margin = (x.w - x.h_w) - (x.l - x.h_l)  # log pi_ref(y_w) - log pi_ref(y_l)
    return -_logsig(p["beta"] * (torch.sort(x.w - x.l).values - torch.sort(ref_margin).values))


def _sppo_hard(x: Pair, p):
    """SPPO's iteration loss (log pi/pi_t (y) - eta (P(y > pi_t) - 1/2))^2, eta = 1/beta, with P = 1 for y_w, 0 for y_l."""
    eta = 1 / p["beta"]
    return (x.h_w - eta / 2) ** 2 + (x.h_l + eta / 2) ** 2


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
    "slic": lambda x, p: torch.relu(1 - p["beta"] * (x.w - x.l)),  # SLiC-HF Eq. 1 (RSO Eq. 9): margin 1/beta, no pi_ref
    "hinge": lambda x, p: torch.relu(1 - p["beta"] * (x.h_w - x.h_l)),  # RSO Eq. 10, hinge-norm
    "bco_pair": _bco_pair,
    "aot": _aot,
    "aot_unpaired": lambda x, p: -_logsig(p["beta"] * (torch.sort(x.h_w).values - torch.sort(x.h_l).values)),  # AOT
    "sppo_hard": _sppo_hard,
    "nll_seq": lambda x, p: -x.w / x.n_w,  # MPO's L_g: each chosen response's NLL over its own length
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


def ref_reference_updates(reference: list, policies: list, alpha: float, every: int) -> list:
    """TR-DPO's soft update, on the parameters: after optimizer step t (t = 1, 2, ...), if t is a multiple of `every`,
    pi_ref <- alpha pi_theta + (1 - alpha) pi_ref_prev. `policies[t - 1]`: the policy's parameters after step t.
    Returns the reference's parameters after each step."""
    out = []
    for t, policy in enumerate(policies, start=1):
        if t % every == 0:
            reference = [alpha * a + (1 - alpha) * r for a, r in zip(policy, reference)]
        out.append(reference)
    return out


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
