"""The dpo helper's recipes: SLiC-HF, RSO, BCO (paired), TR-DPO, AOT, MPO, one iteration of Iterative RPO and SPPO.

References worked by hand, the reference-free stand-in, recipe errors, and one mutation per recipe that verify fails.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import assert_user_error, run_cli
from paperrl.verify import references as v

W, L = torch.tensor([-2.0, -1.0]), torch.tensor([-2.5, -4.0])  # log pi(y_w), log pi(y_l) of two pairs
RW, RL = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -2.0])  # log pi_ref(y_w), log pi_ref(y_l)
NW, NL = torch.tensor([2.0, 4.0]), torch.tensor([1.0, 3.0])  # lengths
sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731


def loss(p):
    return v.ref_preference_loss(W, L, RW, RL, NW, NL, p).item()


def test_slic_hinge_without_a_reference_by_hand():
    # margins log pi(y_w) - log pi(y_l) = 0.5 and 3: max(0, 1 - 0.5) = 0.5 and 0; the reference plays no part
    assert loss({"loss": "slic", "beta": 1.0}) == pytest.approx(0.25)
    assert v.ref_preference_loss(W, L, RW * 9, RL, NW, NL, {"loss": "slic", "beta": 1.0}).item() == pytest.approx(0.25)
    # beta 0.1 is a margin of 10: 1 - 0.05 and 1 - 0.3
    assert loss({"loss": "slic", "beta": 0.1}) == pytest.approx((0.95 + 0.7) / 2)


def test_rso_hinge_norm_by_hand():
    # h_w = log pi(y_w) - log pi_ref(y_w) = (-1, 1), h_l = (-1, -2): h_w - h_l = 0 and 3
    assert loss({"loss": "hinge", "beta": 0.5}) == pytest.approx((1.0 + 0.0) / 2)


def test_bco_reward_shift_by_hand():
    # r = beta h: r_w = (-0.1, 0.1), r_l = (-0.1, -0.2); delta = mean of the four = -0.075
    r_w, r_l, delta = [-0.1, 0.1], [-0.1, -0.2], -0.075
    expected = sum(-math.log(sig(a - delta)) - math.log(sig(-(b - delta))) for a, b in zip(r_w, r_l)) / 2
    assert loss({"loss": "bco_pair", "beta": 0.1}) == pytest.approx(expected, abs=1e-6)
    no_shift = sum(-math.log(sig(a)) - math.log(sig(-b)) for a, b in zip(r_w, r_l)) / 2  # TRL 1.16's form
    assert loss({"loss": "bco_pair", "beta": 0.1, "reward_shift": False}) == pytest.approx(no_shift, abs=1e-6)


def test_bco_reward_shift_carries_no_gradient():
    w = W.clone().requires_grad_()
    v.ref_preference_loss(w, L, RW, RL, NW, NL, {"loss": "bco_pair", "beta": 0.1}).backward()
    h_w, h_l = [-1.0, 1.0], [-1.0, -2.0]
    delta = 0.1 * sum(h_w + h_l) / 4
    assert w.grad.tolist() == pytest.approx([-0.1 * (1 - sig(0.1 * h - delta)) / 2 for h in h_w], abs=1e-6)


def test_aot_compares_sorted_margins_by_hand():
    # policy margins (0.5, 3) sorted; reference margins (0.5, 0) sorted to (0, 0.5): quantile differences 0.5, 2.5
    expected = (-math.log(sig(0.5)) - math.log(sig(2.5))) / 2
    assert loss({"loss": "aot", "beta": 1.0}) == pytest.approx(expected, abs=1e-6)
    # unpaired: h_w = (-1, 1) and h_l = (-1, -2) sorted: (-1, 1) against (-2, -1): differences 1 and 2
    assert loss({"loss": "aot_unpaired", "beta": 1.0}) == pytest.approx((-math.log(sig(1)) - math.log(sig(2))) / 2)


def test_sppo_hard_labels_by_hand():
    # eta = 1/beta = 2: (h_w - 1)^2 + (h_l + 1)^2 with h_w = (-1, 1), h_l = (-1, -2): (4 + 0) and (0 + 1)
    assert loss({"loss": "sppo_hard", "beta": 0.5}) == pytest.approx(2.5)


def test_nll_per_response_against_per_token():
    # MPO: mean of 2/2 and 1/4; TRL's sft: 3 / 6 tokens
    assert loss({"loss": "nll_seq"}) == pytest.approx((1.0 + 0.25) / 2)
    assert loss({"loss": "sft"}) == pytest.approx(0.5)


def test_tr_dpo_soft_update_by_hand():
    # alpha 0.6 every 2 steps from pi_ref = 0: unchanged after step 1; 0.6 x 2 after step 2; again after step 3;
    # 0.6 x 5 + 0.4 x 1.2 after step 4
    policies = [[torch.tensor([1.0])], [torch.tensor([2.0])], [torch.tensor([4.0])], [torch.tensor([5.0])]]
    refs = v.ref_reference_updates([torch.tensor([0.0])], policies, 0.6, 2)
    assert [r[0].item() for r in refs] == pytest.approx([0.0, 1.2, 1.2, 3.48])


def test_reference_free_needs_the_dpo_kind_and_no_sync():
    assert_user_error(run_cli("slic-hf", "--set", "sync_ref_model=true", "--dry-run"), "reference_free",
                      "sync_ref_model")
    assert_user_error(run_cli("simpo", "--set", "reference_free=true", "--dry-run"), "reference_free", "dpo")
    assert_user_error(run_cli("slic-hf", "--set", "reference_free=maybe", "--dry-run"), "reference_free", "boolean")


@pytest.mark.slow
def test_zero_reference_turns_trl_hinge_into_slic(cache_dir):
    """The stand-in reference: TRL's hinge with it equals SLiC's loss on the policy's own log-likelihoods."""
    from paperrl.verify.preference import PREFERENCE_PAIRS
    from paperrl.verify.scenario import perturb, real_trainer, scenario_plan

    plan = scenario_plan("slic-hf", [], per_device_train_batch_size=len(PREFERENCE_PAIRS))
    trainer = real_trainer(plan, rows=[dict(zip(("prompt", "chosen", "rejected"), p)) for p in PREFERENCE_PAIRS])
    assert type(trainer.ref_model).__name__ == "ZeroReference"
    perturb(trainer.model)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    ids, mask = batch["input_ids"], batch["completion_mask"][:, 1:].float()
    logp = torch.log_softmax(trainer.model(input_ids=ids, attention_mask=batch["attention_mask"]).logits[:, :-1], -1)
    seq = (logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
    n = len(PREFERENCE_PAIRS)
    inside = (seq[:n] - seq[n:] < 1).sum().item()
    assert 0 < inside < n  # some pairs inside the margin, some beyond: the check can fail either way
    expected = torch.relu(1 - (seq[:n] - seq[n:])).mean()
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("recipe,mutation,broken", [
    ("slic-hf", "reference_free=false", "preference loss"),  # TRL's own reference comes back
    ("slic-hf", "beta=0.1", "preference loss"),  # a margin of 10
    ("rso", "beta=0.5", "preference loss"),
    ("bco-pair", "beta=0.1", "preference loss"),
    ("bco-pair", "deviations.bco_reward_shift.max_relative=0.001", "BCO reward shift"),
    ("tr-dpo", "ref_model_mixup_alpha=0.5", "reference update pi_ref"),
    ("tr-dpo", "sync_ref_model=false", "reference update pi_ref"),
    ("tr-dpo", "ref_model_sync_steps=100", "reference update period"),
    # at beta 0.01 both AOT losses sit near log 2 (within the loss row's tolerance): their gradients tell them apart
    ("aot", "loss_type=[aot_unpaired]", "gradient of the preference loss"),
    ("aot-unpaired", "loss_type=[aot]", "gradient of the preference loss"),
    ("mpo", "loss_weights=[1.0, 0.2, 1.0]", "preference loss"),
    ("mpo", "deviations.sft_normalisation.max_relative=0.01", "NLL over each chosen response's length"),
    ("iterative-rpo", "loss_weights=[1.0, 0.0]", "preference loss"),
    ("sppo", "beta=0.01", "preference loss"),
])
def test_mutations_fail_verify(cache_dir, recipe, mutation, broken):
    from paperrl.verify import verify

    failed = [c.check for c in verify(recipe, [mutation]) if c.status == "FAIL"]
    assert any(name.startswith(broken) for name in failed), failed
