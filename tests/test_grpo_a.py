"""Helper grpo-a's recipes: DeepSeek-R1, INTELLECT-2, Skywork-OR1, 80/20, DeepSeek-V3.2, GDPO, VESPO, Demystifying.

The new references on examples worked by hand (fast), the cosine reward builtin, and for every recipe a mutation of
its defining value that `paperrl verify` must FAIL (slow: each builds the real trainer).
"""

from __future__ import annotations

import math

import pytest
import torch

from paperrl.verify import references as v
from paperrl.verify import verify

TOKEN = {"ratio": "token", "clip": [0.2, 0.2], "aggregation": "token_mean"}


def _one_token(log_ratio: float, advantage: float, objective: dict, **kwargs):
    logps = torch.tensor([[-1.0]])
    return v.ref_policy_loss(logps, logps - log_ratio, torch.ones(1, 1), torch.tensor([advantage]), objective, 1,
                             **kwargs).item()


def test_two_sided_clip_by_hand():
    # r = 5, A = -1: PPO's min(rA, clip(r) A) = min(-5, -1.2) = -5; with delta = 4, min(-4, -1.2) = -4 (loss 4)
    assert _one_token(math.log(5), -1.0, TOKEN) == pytest.approx(5.0)
    assert _one_token(math.log(5), -1.0, {**TOKEN, "ratio_cap": 4.0}) == pytest.approx(4.0)
    # A > 0: the clip at 1 + eps binds first, the cap changes nothing: min(5, 1.2) = 1.2
    assert _one_token(math.log(5), 1.0, {**TOKEN, "ratio_cap": 4.0}) == pytest.approx(-1.2)


def test_off_policy_mask_by_hand():
    logps = torch.tensor([[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]])
    old = logps + torch.tensor([[0.9, 0.3], [0.9, 0.3], [0.2, 0.2]])  # mean log(pi_old/pi): 0.6, 0.6, 0.2
    mask = torch.ones(3, 2)
    m = v.ref_off_policy_mask(logps, old, mask, torch.tensor([-1.0, 1.0, -1.0]), 0.5)
    assert m.squeeze(1).tolist() == [0.0, 1.0, 1.0]  # only A < 0 and drift 0.6 > 0.5 is dropped


def test_unbiased_kl_by_hand():
    # pi/pi_old = e^0.5, pi_ref/pi = e^-1: k3 = e^-1 + 1 - 1 = e^-1; V3.2 weighs it by the ratio
    obj = {**TOKEN, "clip": [0.2, 0.2], "kl": 1.0}
    logps, old, ref = torch.tensor([[-1.0]]), torch.tensor([[-1.5]]), torch.tensor([[-2.0]])
    plain = v.ref_policy_loss(logps, old, torch.ones(1, 1), torch.tensor([0.0]), obj, 1, ref).item()
    weighted = v.ref_policy_loss(logps, old, torch.ones(1, 1), torch.tensor([0.0]), {**obj, "kl_weighting": "ratio"},
                                 1, ref).item()
    assert plain == pytest.approx(math.exp(-1))
    assert weighted == pytest.approx(math.exp(0.5) * math.exp(-1))


def test_vespo_weight_by_hand():
    a = torch.tensor([[1.0], [1.0], [-1.0]])
    w = torch.tensor([[1.0], [2.0], [2.0]])
    phi = v.ref_vespo_weight(w, a, [2.0, 3.0, 3.0, 2.0]).squeeze(1).tolist()
    assert phi == pytest.approx([1.0, 4 * math.exp(-3), 8 * math.exp(-2)])  # W^k e^(lambda (1 - W))
    # the loss: -sg(phi) A log pi per token, over the tokens; W = prod of the token ratios (e^0.2 e^0.3)
    logps = torch.tensor([[-1.0, -2.0]])
    loss = v.ref_policy_loss(logps, logps - torch.tensor([[0.2, 0.3]]), torch.ones(1, 2), torch.tensor([1.0]),
                             {"ratio": "sequence_product", "vespo": [2.0, 3.0, 3.0, 2.0], "aggregation": "token_mean"},
                             2).item()
    w = math.exp(0.5)
    assert loss == pytest.approx(-(w ** 2 * math.exp(3 * (1 - w))) * (-3.0) / 2)


def test_entropy_mask_by_hand():
    h = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # 9.0 is padding
    # the 0.8-quantile of 1..5 is 4.2: only the token of entropy 5 is kept
    assert v.ref_entropy_mask(h, mask, 0.2).tolist() == [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    with pytest.raises(ValueError):  # an entropy-masked objective without the kept tokens is a caller's error
        _one_token(0.0, 1.0, {**TOKEN, "entropy_mask": 0.2})


def test_gdpo_advantages_by_hand():
    # two groups of two, two rewards; each reward normalised in its group: +-1/sqrt(2) / (1/sqrt(2)... ) = +-0.707..
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    a = v.ref_gdpo_advantages(rewards, [1.0, 1.0], 2)
    s = 1 / math.sqrt(2)  # (r - mean) / std for two values that differ by 1: +-0.5 / 0.7071
    per = torch.tensor([0.5 / (s + v.EPS), -0.5 / (s + v.EPS), 0.5 / (s + v.EPS), -0.5 / (s + v.EPS)])
    expected = (per - per.mean()) / (per.std() + v.EPS)
    assert torch.allclose(a, expected)
    # the plain sum first (GRPO) would give the second group's rewards 2 and 1 the same spread: GDPO keeps both
    assert a[2] > 0 > a[3]


def test_entropy_coefficients_by_hand():
    control = {"initial": 0.0, "target": 0.2, "delta": 0.1, "min": 0.0, "max": 0.25}
    applied, after = v.ref_entropy_coefficients([0.1, 0.1, 0.3, 0.1, 0.1], control)
    assert after == pytest.approx([0.1, 0.2, 0.1, 0.2, 0.25])  # up below the target, down above, capped at 0.25
    assert applied == pytest.approx([0.0, 0.1, 0.2, 0.0, 0.2])  # c_k while the previous entropy <= target


def test_cosine_reward_by_hand():
    spec = {"l_max": 100, "correct": (2.0, 1.0), "wrong": (-10.0, 0.0), "exceed": -10.0}
    got = v.ref_cosine_reward([0, 50, 100, 0, 50, 99], [True, True, True, False, False, False], spec).tolist()
    assert got[:5] == pytest.approx([2.0, 1.5, -10.0, -10.0, -5.0])
    assert got[5] == pytest.approx(0.0 + 0.5 * -10.0 * (1 + math.cos(math.pi * 0.99)))


@pytest.mark.parametrize("verifier,right,wrong", [("accuracy", r"\boxed{3}", r"\boxed{4}"), ("answer_match", "3", "4")])
def test_cosine_scaled_builtin_matches_the_paper(verifier, right, wrong):
    from paperrl.rewards import cosine_scaled

    fn = cosine_scaled(10, min_value_wrong=-10.0, max_value_wrong=0.0, min_value_correct=1.0, max_value_correct=2.0,
                       exceed_length=-7.0, verifier=verifier)
    lengths = [0, 3, 5, 9, 10, 12]
    spec = {"l_max": 10, "correct": (2.0, 1.0), "wrong": (-10.0, 0.0), "exceed": -7.0}
    for answer, ok in ((right, True), (wrong, False)):
        got = fn([answer] * len(lengths), ["3"] * len(lengths), [[0] * n for n in lengths])
        assert got == pytest.approx(v.ref_cosine_reward(lengths, [ok] * len(lengths), spec).tolist())


def test_cosine_scaled_rejects_an_unknown_verifier():
    from paperrl.errors import PaperrlError
    from paperrl.rewards import build

    with pytest.raises(PaperrlError, match="verifier 'exact'; accepted: accuracy, answer_match"):
        build([{"name": "cosine_scaled", "weight": 1.0, "args": {"max_len": 10, "verifier": "exact"}}])


# every recipe: a mutation of its defining value fails the check that carries it
@pytest.mark.slow
@pytest.mark.parametrize("recipe,mutation,broken", [
    ("deepseek-r1", "use_bias_correction_kl=true", "gradient of the policy loss"),
    ("intellect-2", "delta=2.0", "policy loss"),
    ("intellect-2", "delta=null", "gradient of the policy loss"),
    ("skywork-or1", "entropy_target=0.24", "adaptive entropy coefficient"),
    ("skywork-or1", "entropy_coef=0.01", "adaptive entropy coefficient"),  # the Paper Index's c_0
    ("80-20", "top_entropy_quantile=1.0", "gradient of the policy loss"),
    ("deepseek-v3.2", "off_policy_mask_threshold=2.0", "gradient of the policy loss"),
    ("deepseek-v3.2", "use_bias_correction_kl=false", "gradient of the policy loss"),
    ("gdpo", "multi_objective_aggregation=sum_then_normalize", "advantage (gdpo)"),
    ("vespo", "vespo_k_pos=1.0", "gradient of the policy loss"),
    ("vespo", "vespo_lambda_neg=1.0", "gradient of the policy loss"),
    ("demystifying", "rewards.cosine_scaled.min_value_wrong=-1", "cosine length-scaling reward"),
    ("demystifying", "rewards.cosine_scaled.exceed_length=null", "cosine length-scaling reward"),
])
def test_mutations_fail_the_check_they_break(cache_dir, recipe, mutation, broken):
    failed = [c.check for c in verify(recipe, [mutation]) if c.status == "FAIL"]
    assert any(name.startswith(broken) for name in failed), failed


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["deepseek-r1", "intellect-2", "skywork-or1", "80-20", "deepseek-v3.2", "gdpo",
                                    "vespo", "demystifying"])
def test_recipe_verifies(cache_dir, recipe):
    checks = verify(recipe, [])
    assert [c.status for c in checks if c.status == "FAIL"] == [], [(c.check, c.note) for c in checks]
