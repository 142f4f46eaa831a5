"""The kto, reward, orpo, tpo and online-dpo kinds: references checked by hand, one fast verify per kind-family
representative, mutations that must FAIL verify, and the kinds' own behaviour (rating margins, demo rows)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from paperrl.kinds import KINDS
from paperrl.verify import verify
from paperrl.verify.kto import mismatched, ref_kto_loss, ref_kto_z0
from paperrl.verify.online_dpo import ref_online_dpo_loss
from paperrl.verify.orpo import ref_orpo_loss
from paperrl.verify.reward import ref_reward_loss
from paperrl.verify.tpo import ref_tpo_loss


def sig(x):
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------- the references, on examples done on paper


def test_kto_reference_by_hand():
    # log-ratios r: desirable +2, undesirable -1; z0 = 0.5; beta 0.1, lambda_D 1.33, lambda_U 1
    pol, ref = torch.tensor([2.0, -1.0]), torch.zeros(2)
    z0 = ref_kto_z0(torch.tensor([1.0, 0.0]), torch.zeros(2))  # mean of the mismatched log-ratios
    assert z0.item() == pytest.approx(0.5)
    loss = ref_kto_loss(pol, ref, torch.tensor([True, False]), z0, 0.1, 1.33, 1.0)
    expected = (1.33 * (1 - sig(0.1 * (2 - 0.5))) + 1.0 * (1 - sig(0.1 * (0.5 + 1)))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # a negative KL estimate is clamped at 0 (§4.1: max(0, ...)), and carries no gradient
    assert ref_kto_z0(torch.tensor([-3.0, -1.0], requires_grad=True), torch.zeros(2)).item() == 0.0
    assert mismatched(["a", "b", "c"]) == ["c", "a", "b"]


def test_reward_reference_by_hand():
    rc, rr = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0])
    plain = (-math.log(sig(1.0)) - math.log(sig(-0.5))) / 2
    assert ref_reward_loss(rc, rr).item() == pytest.approx(plain, rel=1e-6)
    margin = torch.tensor([1.0, 1 / 3])  # Llama 2 Eq. 2: margins subtracted inside the sigmoid
    with_margin = (-math.log(sig(0.0)) - math.log(sig(-0.5 - 1 / 3))) / 2
    assert ref_reward_loss(rc, rr, margin).item() == pytest.approx(with_margin, rel=1e-6)
    centred = plain + 0.01 * (1.0 ** 2 + 1.5 ** 2) / 2  # + eta E[(r+ + r-)^2]
    assert ref_reward_loss(rc, rr, None, 0.01).item() == pytest.approx(centred, rel=1e-6)


def test_orpo_reference_by_hand():
    # mean token log-probs: chosen log(0.5), rejected log(0.2): odds 1 and 0.25, log odds ratio log 4
    loss = ref_orpo_loss(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.2)]), torch.tensor(2.0), 0.1)
    assert loss.item() == pytest.approx(2.0 + 0.1 * -math.log(sig(math.log(4))), rel=1e-6)


def test_tpo_reference_by_hand():
    lw, ll, nw, nl = torch.tensor([-2.0]), torch.tensor([-6.0]), torch.tensor([2.0]), torch.tensor([3.0])
    tpo = ref_tpo_loss(lw, ll, nw, nl, torch.tensor(1.5), beta=0.01, alpha=1.0)
    assert tpo.item() == pytest.approx(-math.log(sig(0.01 * 4.0)) + 1.5, rel=1e-6)
    # TPO-L: per-token averages (-1 and -2) and the margin gamma subtracted after beta
    tpo_l = ref_tpo_loss(lw, ll, nw, nl, torch.tensor(1.5), beta=2.0, alpha=0.5, gamma=0.5)
    assert tpo_l.item() == pytest.approx(-math.log(sig(2.0 * 1.0 - 0.5)) + 0.75, rel=1e-6)


def test_online_dpo_reference_orders_the_pair_by_reward():
    pol_a, pol_b, zero = torch.tensor([-1.0, -1.0]), torch.tensor([-3.0, -3.0]), torch.zeros(2)
    # prompt 1: A rewarded higher (h = +2); prompt 2: B rewarded higher (h = -2)
    loss = ref_online_dpo_loss(pol_a, pol_b, zero, zero, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 0.5)
    assert loss.item() == pytest.approx((-math.log(sig(1.0)) - math.log(sig(-1.0))) / 2, rel=1e-6)
    # a tie keeps the first sample as the chosen one
    tie = ref_online_dpo_loss(pol_a, pol_b, zero, zero, torch.ones(2), torch.ones(2), 0.5)
    assert tie.item() == pytest.approx(-math.log(sig(1.0)), rel=1e-6)


# ---------------------------------------------------------------- the kinds' demo tasks and rating margins


def test_demo_rows_of_the_new_kinds():
    rng = random.Random(0)
    rows = [KINDS["kto"].task.row(a, b, rng) for a, b in [(3, 4), (12, 7), (25, 25), (9, 9)] * 10]
    assert {r["label"] for r in rows} == {True, False}
    assert all((r["completion"] == str(eval(r["prompt"][:-1]))) == r["label"] for r in rows)
    triple = KINDS["tpo"].task.row(12, 7, rng)
    gold, near, far = (int(triple[k]) for k in ("reference", "chosen", "rejected"))
    assert gold == 19 and 1 <= abs(near - gold) <= 2 and abs(far - gold) >= 5
    rated = KINDS["reward"].task.row(25, 25, random.Random(3))
    assert rated["rating"] in ("significantly better", "better", "slightly better")


def test_rating_column_becomes_the_margin(cache_dir):
    """llama2-margin: a `rating` column is mapped through Table 27; reward-centering drops it (plain BT)."""
    from paperrl.verify.reward import PAIRS
    from paperrl.verify.scenario import real_trainer, scenario_plan

    rows = [{"prompt": p, "chosen": c, "rejected": r, "rating": g} for p, c, r, g in PAIRS]
    trainer = real_trainer(scenario_plan("llama2-margin", []), rows=rows)
    assert trainer.train_dataset["margin"][:4] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    plain = real_trainer(scenario_plan("reward-centering", []), rows=rows)
    assert "margin" not in plain.train_dataset.column_names and "rating" not in plain.train_dataset.column_names


# ---------------------------------------------------------------- verify on the real trainers


def test_kto_verifies(cache_dir):  # the fast representative of the new kinds
    checks = verify("kto", [])
    assert [c.status for c in checks if c.status == "FAIL"] == []
    assert checks[0].check.startswith("KL reference point") and checks[0].max_abs_diff < checks[0].tolerance


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["reward-centering", "llama2-margin", "orpo", "tpo", "tpo-l", "online-dpo"])
def test_new_kinds_verify(cache_dir, recipe):
    assert [c.check for c in verify(recipe, []) if c.status == "FAIL"] == []


@pytest.mark.slow
@pytest.mark.parametrize("recipe,mutation,broken", [
    ("kto", "beta=0.3", "KTO loss"),
    ("kto", "desirable_weight=1.33", "KTO loss"),
    ("reward-centering", "center_rewards_coefficient=0.1", "reward-model loss"),
    ("llama2-margin", "center_rewards_coefficient=0.01", "reward-model loss"),
    ("orpo", "beta=0.5", "ORPO loss"),
    ("tpo", "tpo_alpha=0.5", "TPO loss"),
    ("tpo-l", "tpo_l_gamma=1.0", "TPO-L loss"),
    ("online-dpo", "beta=[0.5]", "online DPO loss"),
    ("online-dpo", "loss_type=ipo", "online DPO loss"),
])
def test_mutations_fail_verify(cache_dir, recipe, mutation, broken):
    failed = [c.check for c in verify(recipe, [mutation]) if c.status == "FAIL"]
    assert any(name.startswith(broken) for name in failed), failed
