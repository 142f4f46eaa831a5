"""The grpo-b helper's entries: TIS, MIS (IcePop), sequence-level IS, GMPO, A*-PO and REINFORCE++.

References checked on examples done by hand; one fast verify per new kind (gmpo, a2po); mutations of each recipe's
defining value that must FAIL verify (slow); the kinds' own behaviour."""

from __future__ import annotations

import math

import pytest
import torch

from paperrl.errors import PaperrlError
from paperrl.kinds import KINDS
from paperrl.verify import verify
from paperrl.verify.a2po import ref_a2po_loss, ref_v_star
from paperrl.verify.gmpo import ref_gmpo_loss
from paperrl.verify.importance_sampling import ref_corrected_loss, ref_mismatch_weight
from paperrl.verify.reinforce_pp import ref_global_advantages


def close(tensor, expected) -> bool:
    return torch.allclose(tensor, torch.tensor(expected, dtype=tensor.dtype), rtol=1e-6, atol=1e-7)

# ---------------------------------------------------------------- the references, on examples done on paper


def test_mismatch_weight_by_hand():
    # two completions of 2 tokens; log k = log pi_train - log pi_infer: (log 3, log 0.4) and (log 1.5, log 1.2)
    train = torch.log(torch.tensor([[3.0, 0.4], [1.5, 1.2]]))
    infer = torch.zeros(2, 2)
    mask = torch.ones(2, 2)
    tis = ref_mismatch_weight(train, infer, mask, {"level": "token", "how": "truncate", "c_max": 2.0})
    assert close(tis, [[2.0, 0.4], [1.5, 1.2]])  # min(k, 2), no lower bound
    icepop = ref_mismatch_weight(train, infer, mask, {"level": "token", "how": "mask", "c_min": 0.5, "c_max": 2.0})
    assert close(icepop, [[0.0, 0.0], [1.5, 1.2]])  # outside [0.5, 2]: no gradient
    seq = ref_mismatch_weight(train, infer, mask, {"level": "sequence", "how": "truncate", "c_max": 2.0})
    assert close(seq, [[1.2], [1.8]])  # 3 x 0.4 = 1.2, 1.5 x 1.2 = 1.8
    seq_mask = ref_mismatch_weight(train, infer, mask, {"level": "sequence", "how": "mask", "c_min": 1.5, "c_max": 2.0})
    assert close(seq_mask, [[0.0], [1.8]])
    # padding carries no mismatch: the second token of a 1-token completion is ignored at sequence level
    short = ref_mismatch_weight(train, infer, torch.tensor([[1.0, 0.0], [1.0, 1.0]]),
                                {"level": "sequence", "how": "truncate", "c_max": 5.0})
    assert close(short, [[3.0], [1.8]])


def test_corrected_loss_by_hand():
    # on-policy (r = 1): -(weight x A), token mean over 3 tokens
    logps = torch.zeros(1, 3)
    loss = ref_corrected_loss(logps, logps, torch.ones(1, 3), torch.tensor([2.0]), torch.tensor([[1.0, 0.5, 0.0]]),
                              (0.2, 0.2), "token_mean")
    assert loss.item() == pytest.approx(-(2 * 1.0 + 2 * 0.5 + 0) / 3)


def test_gmpo_reference_by_hand():
    # A = +1: log-ratios 0.1 and 0.6 -> min(u, clip(u)) = 0.1, 0.4; geometric mean exp(0.25)
    # A = -1: log-ratios -0.6 and 0.1 -> s u = 0.6, -0.1 -> min(s u, clip) = 0.4, -0.1 -> times s: -0.4, 0.1
    logps = torch.tensor([[0.1, 0.6], [-0.6, 0.1]])
    loss = ref_gmpo_loss(logps, torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([1.0, -1.0]), (0.4, 0.4))
    assert loss.item() == pytest.approx((-math.exp(0.25) + math.exp(-0.15)) / 2, rel=1e-6)
    # the clip is one-sided: a ratio below e^-0.4 with A > 0 is not clipped (min keeps it)
    low = ref_gmpo_loss(torch.tensor([[-0.6]]), torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([1.0]), (0.4, 0.4))
    assert low.item() == pytest.approx(-math.exp(-0.6), rel=1e-6)


def test_a2po_reference_by_hand():
    # V* = beta1 log mean exp(r / beta1): rewards (1, 0), beta1 = 0.5 -> 0.5 log((e^2 + 1) / 2)
    assert ref_v_star([[1, 0]], 0.5).item() == pytest.approx(0.5 * math.log((math.e ** 2 + 1) / 2))
    assert ref_v_star([[0, 0, 0]], 0.5).item() == 0.0 and ref_v_star([[1, 1]], 0.5).item() == pytest.approx(1.0)
    # (beta2 (log pi - log pi_ref) - (r - V*))^2: beta2 = 0.1, log-ratio 2, r = 1, V* = 0.5 -> (0.2 - 0.5)^2
    loss = ref_a2po_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([0.5]), 0.1)
    assert loss.item() == pytest.approx(0.09)


def test_reinforce_pp_advantages_by_hand():
    # groups of 2: rewards (1, 0), (1, 1) -> group-mean baseline: 0.5, -0.5, 0, 0 -> mean 0, population std 0.125**0.5
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0])
    adv = ref_global_advantages(rewards, 2)
    assert adv.tolist() == pytest.approx([0.5 / 0.125 ** 0.5, -0.5 / 0.125 ** 0.5, 0.0, 0.0])
    # over tokens: the first completion has 3 tokens, the others 1: mean (3 x 0.5 - 0.5) / 6 = 1/6
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    tokens = ref_global_advantages(rewards, 2, mask)
    values = torch.tensor([0.5] * 3 + [-0.5, 0.0, 0.0])
    mean, std = values.mean(), values.var(unbiased=False).sqrt()
    assert tokens[0, 0].item() == pytest.approx(((0.5 - mean) / std).item())
    assert tokens[1].tolist() == pytest.approx([((-0.5 - mean) / std).item(), 0.0, 0.0])


# ---------------------------------------------------------------- the kinds


def test_new_kinds_name_trls_experimental_trainers():
    assert KINDS["gmpo"].load("config_class").__dataclass_fields__["epsilon"].default == 0.4  # log space
    assert KINDS["a2po"].trainer_class.endswith("A2POTrainer") and KINDS["a2po"].reference == "always"


def test_vllm_only_note(capsys):
    from types import SimpleNamespace

    from paperrl.mismatch import VLLMOnly

    state = SimpleNamespace(is_world_process_zero=True)
    args = SimpleNamespace(use_vllm=False, vllm_importance_sampling_correction=True,
                           vllm_importance_sampling_mode="token_truncate")
    VLLMOnly().on_train_begin(args, state, None)
    assert "inactive" in capsys.readouterr().err
    VLLMOnly().on_train_begin(SimpleNamespace(**{**vars(args), "use_vllm": True}), state, None)
    assert capsys.readouterr().err == ""


def test_unknown_mismatch_mode_is_a_one_line_error(cli):
    from conftest import assert_user_error

    assert_user_error(cli("tis", "--set", "vllm_importance_sampling_mode=seq_truncate", "--dry-run"),
                      "vllm_importance_sampling_mode", "sequence_truncate")


def test_a2po_refuses_lora():
    from types import SimpleNamespace

    from paperrl.kinds.a2po import trainer_arguments

    with pytest.raises(PaperrlError, match="LoRA"):
        trainer_arguments(SimpleNamespace(options=SimpleNamespace(lora_r=8)), None)


def test_gmpo_verifies(cache_dir):  # the fast representative of the gmpo kind
    assert [c.check for c in verify("gmpo", []) if c.status == "FAIL"] == []


def test_a2po_verifies_and_catches_beta2(cache_dir):  # the fast representative of the a2po kind
    assert [c.check for c in verify("a-star-po", []) if c.status == "FAIL"] == []
    failed = [c.check for c in verify("a-star-po", ["beta2=0.01"]) if c.status == "FAIL"]
    assert "Stage 2: regression loss" in failed


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["tis", "mis", "sequence-is", "reinforce-pp"])
def test_grpo_b_recipes_verify(cache_dir, recipe):
    assert [c.check for c in verify(recipe, []) if c.status == "FAIL"] == []


@pytest.mark.slow
@pytest.mark.parametrize("recipe, mutation, broken", [
    ("tis", "vllm_importance_sampling_clip_max=3.0", "mismatch weight (token truncate, c_max 2.0)"),
    ("tis", "vllm_importance_sampling_mode=sequence_truncate", "corrected policy loss, off-policy"),
    ("mis", "vllm_importance_sampling_clip_min=0.3", "mismatch weight (token mask, c_min 0.5, c_max 2.0)"),
    ("sequence-is", "vllm_importance_sampling_mode=sequence_mask", "mismatch weight (sequence truncate, c_max 2.0)"),
    ("gmpo", "epsilon=0.2", "GMPO loss (one-sided log-space clip, geometric mean of the token ratios)"),
    ("a-star-po", "beta1=1.0", "Stage 1: V*(x) from the reference samples' rewards"),
    ("a-star-po", "num_value_samples=4", "Stage 1: V*(x) from the reference samples' rewards"),
    ("reinforce-pp", "normalize_advantages=false", "advantage: group-mean baseline, normalised over the batch's completions"),
])
def test_mutations_fail_verify(cache_dir, recipe, mutation, broken):
    failed = [c.check for c in verify(recipe, [mutation]) if c.status == "FAIL"]
    assert broken in failed
