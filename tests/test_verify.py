"""paperrl verify: every recipe verifies on the installed TRL; mutations fail; references checked by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from paperrl import verify as v


# ---------------------------------------------------------------- the references, on examples done on paper


def test_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 2.0, 2.0])  # two groups of two: one varied, one all equal
    assert v.ref_advantages(r, 2, "none").tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])
    assert v.ref_advantages(r, 2, "group").tolist() == pytest.approx([0.70701, -0.70701, 0.0, 0.0], abs=1e-5)
    assert v.ref_advantages(r, 2, "batch").tolist() == pytest.approx([0.52218, -0.52218, 0.0, 0.0], abs=1e-5)
    assert v.ref_advantages(r, 2, "leave_one_out").tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0])


LOG_RATIO = torch.tensor([[0.1, 0.0, -0.1], [0.3, 0.3, 0.0]])  # 2 completions, 3 tokens, the second has 2
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ADV = torch.tensor([1.0, -1.0])


@pytest.mark.parametrize("ratio,aggregation,expected", [
    ("token", "token_mean", -0.0620581),  # (1.10517 + 1 + 0.90484 - 2 x 1.34986) / 5 tokens
    ("token", "sequence_mean", 0.1732613),  # mean of per-sequence means
    ("token", "constant", -0.0517151),  # sum / (2 completions x L_max 3)
    ("sequence", "sequence_mean", 0.1749294),  # s = (1, e^0.3): (1 - 1.34986) / 2
])
def test_policy_loss_by_hand(ratio, aggregation, expected):
    objective = {"ratio": ratio, "aggregation": aggregation, "clip": [0.2, 0.2]}
    loss = v.ref_policy_loss(LOG_RATIO, torch.zeros(2, 3), MASK, ADV, objective, max_len=3)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_clip_higher_by_hand():
    # r = e^0.22 = 1.246 with A > 0: clipped to 1.2 with epsilon_high 0.2, kept with DAPO's 0.28
    lr = torch.tensor([[0.22]])
    args = (lr, torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([1.0]))
    assert v.ref_policy_loss(*args, {"ratio": "token", "aggregation": "token_mean", "clip": [0.2, 0.28]}, 1).item() \
        == pytest.approx(-math.exp(0.22))
    assert v.ref_policy_loss(*args, {"ratio": "token", "aggregation": "token_mean", "clip": [0.2, 0.2]}, 1).item() \
        == pytest.approx(-1.2)


def test_soft_overlong_by_hand():
    assert v.ref_soft_overlong([6, 7, 8, 10, 11], 10, 4).tolist() == pytest.approx([0, -0.25, -0.5, -1, -1])


def test_preference_losses_by_hand():
    t = torch.tensor
    dpo = v.ref_preference_loss(t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]), t([2.0]), t([2.0]),
                                {"loss": "sigmoid", "beta": 0.1})
    assert dpo.item() == pytest.approx(0.6443967)  # -log sigmoid(0.1 x (0.5 + 0.5))
    alphapo = v.ref_preference_loss(t([-2.0]), t([-4.0]), t([0.0]), t([0.0]), t([2.0]), t([2.0]),
                                    {"loss": "alphapo", "alpha": 0.25, "beta": 2.5, "gamma": 0.25})
    assert alphapo.item() == pytest.approx(0.0329268, rel=1e-5)


def test_bema_by_hand():
    a = {"ema_power": 0.5, "bias_power": 0.2, "lag": 10, "multiplier": 1.0, "min_ema_multiplier": 0.0}
    thetas = [torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0])]
    assert v.ref_bema(thetas[:2], a, 1).item() == pytest.approx(0.9205553)
    assert v.ref_bema(thetas, a, 1).item() == pytest.approx(2.0085515)


# ---------------------------------------------------------------- against the installed TRL


def test_verify_all_passes(cli):
    result = cli("verify", "--all", "--format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert sorted(report) == ["alphapo", "bema", "dapo", "dpo", "dr-grpo", "gspo", "lite-ppo", "rloo"]
    statuses = {(name, c["check"]): c["status"] for name, checks in report.items() for c in checks}
    assert "FAIL" not in statuses.values()
    # what TRL knowingly does differently is reported, with its size, not passed silently
    assert statuses[("rloo", "REINFORCE gradient, off-policy mini-batch (importance-weighted, unclipped)")] == "PASS"
    assert statuses[("rloo", "TRL's default RLOO clip (epsilon 0.2), without the recipe's setting")] == "KNOWN DEVIATION"
    dev = next(c for c in report["dapo"] if c["status"] == "KNOWN DEVIATION")
    assert dev["max_abs_diff"] > dev["tolerance"] and "normaliser" in dev["check"]


@pytest.mark.parametrize("recipe,mutation,broken", [
    ("gspo", "importance_sampling_level=token", "policy loss"),
    ("dr-grpo", "scale_rewards=group", "advantage"),
    ("dapo", "epsilon_high=0.2", "policy loss"),
    ("lite-ppo", "scale_rewards=group", "advantage"),
    ("alphapo", "alpha=0", "preference loss"),
    ("dapo", "exact_token_normaliser=false", "policy loss"),
    ("rloo", "epsilon=0.2", "REINFORCE gradient, off-policy"),
])
def test_mutations_fail_the_check_they_break(cache_dir, recipe, mutation, broken):
    checks = v.verify(recipe, [mutation])
    failed = [c.check for c in checks if c.status == "FAIL"]
    assert any(name.startswith(broken) for name in failed), failed


def test_table_output(cli):
    result = cli("verify", "gspo")
    assert result.returncode == 0
    assert "GSPO Eq. 7" in result.stdout and "PASS" in result.stdout
