"""The distill-sft helper's entries: on-policy distillation, GKD, IW-OPD, SDFT, SDPO (new kinds) and DFT, best-fit
packing, T5 packing (sft kind).

References checked on examples done by hand; one fast verify per new kind; mutations of each recipe's defining value
that must FAIL verify (slow); the kinds' own behaviour (teacher, chat template, TRL's normaliser fixed)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from paperrl.errors import PaperrlError
from paperrl.kinds import KINDS
from paperrl.verify import verify
from paperrl.verify.distillation import (ref_divergence, ref_iw_opd_weights, ref_self_teacher, ref_topk_support,
                                         sequence_mean, token_mean)
from paperrl.verify.sft import ref_best_fit_decreasing, ref_dft_loss

STUDENT = torch.log(torch.tensor([0.5, 0.5]))
TEACHER = torch.log(torch.tensor([0.9, 0.1]))

# ---------------------------------------------------------------- the references, on examples done on paper


def test_divergences_by_hand():
    reverse = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # KL(S||T)
    forward = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # KL(T||S)
    # GKD Eq. 1, beta 0.5: M = (0.7, 0.3); 0.5 KL(T||M) + 0.5 KL(S||M)
    jsd = 0.5 * (0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)) + \
        0.5 * (0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3))
    assert ref_divergence(STUDENT, TEACHER, {"kind": "reverse_kl"}).item() == pytest.approx(reverse, rel=1e-6)
    assert ref_divergence(STUDENT, TEACHER, {"kind": "forward_kl"}).item() == pytest.approx(forward, rel=1e-6)
    got = ref_divergence(STUDENT, TEACHER, {"kind": "generalized_jsd", "beta": 0.5}).item()
    assert got == pytest.approx(jsd, rel=1e-6)
    # beta weights the teacher: beta 0.9 puts the mixture near the teacher, so the student's term dominates
    near_teacher = ref_divergence(STUDENT, TEACHER, {"kind": "generalized_jsd", "beta": 0.9}).item()
    m = (0.9 * 0.9 + 0.1 * 0.5, 0.9 * 0.1 + 0.1 * 0.5)
    expected = 0.9 * (0.9 * math.log(0.9 / m[0]) + 0.1 * math.log(0.1 / m[1])) + \
        0.1 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1]))
    assert near_teacher == pytest.approx(expected, rel=1e-6)


def test_topk_support_by_hand():
    student = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    teacher = torch.log(torch.tensor([0.1, 0.6, 0.3]))
    s, t = ref_topk_support(student, teacher, 2, tail=True)  # the student's top 2: tokens 0 and 1, tail 0.2 / 0.3
    torch.testing.assert_close(s.exp(), torch.tensor([0.5, 0.3, 0.2]))
    torch.testing.assert_close(t.exp(), torch.tensor([0.1, 0.6, 0.3]))
    s, t = ref_topk_support(student, teacher, 2, tail=False)  # renormalised over the two
    torch.testing.assert_close(s.exp(), torch.tensor([0.625, 0.375]))
    torch.testing.assert_close(t.exp(), torch.tensor([1 / 7, 6 / 7]))


def test_iw_opd_weights_by_hand():
    # |A| = 1, 2, 1 (sum 4): prefix shares 0, 1/4, 3/4 -> 1 + 0.5 (1 - share); padding after the third token
    a = torch.tensor([[1.0, -2.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    torch.testing.assert_close(ref_iw_opd_weights(a, mask, 0.5)[:, :3], torch.tensor([[1.5, 1.375, 1.125]]))
    torch.testing.assert_close(ref_iw_opd_weights(a, mask, 0.0), torch.ones(1, 4))  # gamma 0: plain OPD


def test_self_teacher_by_hand():
    rewards = [1, 0, 0, 0, 1, 0, 0, 1]  # two groups of 4
    assert ref_self_teacher(rewards, 4, 0.5, True) == [None, 0, 0, 0, 7, 4, 4, 4]  # a lone success has no teacher
    assert ref_self_teacher(rewards, 4, 0.5, False) == [0, 0, 0, 0, 4, 4, 4, 4]
    assert ref_self_teacher(rewards, 4, 1.5, True) == [None] * 8


def test_aggregations_by_hand():
    x = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert token_mean(x, mask).item() == pytest.approx(2.0)  # (1 + 3 + 2) / 3
    assert sequence_mean(x, mask).item() == pytest.approx(2.0)  # (2 + 2) / 2
    mask[1] = 0  # a completion without a teacher counts 0 in the sequence mean (TRL's SDPO), not in the token mean
    assert sequence_mean(x, mask).item() == pytest.approx(1.0)
    assert token_mean(x, mask).item() == pytest.approx(2.0)


def test_dft_loss_by_hand():
    logps = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    expected = -(0.5 * math.log(0.5) + 0.25 * math.log(0.25)) / 2
    assert ref_dft_loss(logps, mask).item() == pytest.approx(expected, rel=1e-6)
    # the weight carries no gradient: d/dlogp of -sg(p) log p is -p
    logps = logps.clone().requires_grad_()
    ref_dft_loss(logps, mask).backward()
    torch.testing.assert_close(logps.grad, torch.tensor([[-0.25, -0.125, 0.0]]))


def test_best_fit_decreasing_by_hand():
    # 9 opens a window; 7 fills it (16); 6 opens a second; 5 -> 11; 3 -> 14
    assert ref_best_fit_decreasing([5, 9, 3, 7, 6], 16) == [16, 14]
    # best fit, not first fit: 4 goes to the fuller of the windows 10 and 12
    assert ref_best_fit_decreasing([10, 12, 4], 16) == [16, 10]


# ---------------------------------------------------------------- the kinds


def test_new_kinds_name_trls_distillation_trainers():
    assert KINDS["distillation"].config_class == "trl.trainer.distillation_config:DistillationConfig"
    assert KINDS["gkd"].config_class == "trl.experimental.gkd.gkd_config:GKDConfig"
    assert KINDS["iw-opd"].config_class == "trl.experimental.iw_opd.iw_opd_config:IWOPDConfig"
    assert KINDS["sdft"].trainer_class == "trl.experimental.sdft.sdft_trainer:SDFTTrainer"
    assert KINDS["sdpo"].online and not KINDS["sdft"].online
    assert KINDS["iw-opd"].closed_sets["distillation_objective"] == ("jsd", "iw_opd")


def test_a_teacher_is_needed_on_the_users_model():
    from paperrl.kinds.distillation import teacher

    plan = SimpleNamespace(config={}, demo_mode=False, recipe=SimpleNamespace(name="gkd"))
    with pytest.raises(PaperrlError, match="teacher_model_name_or_path"):
        teacher(plan)
    plan.config["teacher_model_name_or_path"] = "org/teacher"
    assert teacher(plan) == "org/teacher"


def test_raw_chat_template_is_the_warm_up_text(cache_dir):
    from transformers import AutoTokenizer

    from paperrl import demo
    from paperrl.kinds.distillation import raw_chat_template

    tok = AutoTokenizer.from_pretrained(demo.ensure_model())
    raw_chat_template(tok)
    text = tok.apply_chat_template([{"role": "user", "content": "12+7="}, {"role": "assistant", "content": "19"}],
                                   tokenize=False)
    assert text == "12+7=19<eos>"


def test_demo_teacher_is_better_than_the_student(cache_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from paperrl import demo
    from paperrl.kinds.distillation import TEACHER_TARGET, ensure_teacher

    path = ensure_teacher()
    assert ensure_teacher() == path  # cached
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    student = AutoModelForCausalLM.from_pretrained(demo.ensure_model())
    assert demo.exact_match(model, tok, "validation") >= TEACHER_TARGET
    assert demo.exact_match(model, tok, "validation") > demo.exact_match(student, tok, "validation")


# ---------------------------------------------------------------- verify: one fast representative per new kind


@pytest.mark.parametrize("recipe", ["on-policy-distillation", "gkd", "iw-opd", "sdft", "sdpo"])
def test_distillation_kinds_verify(cache_dir, recipe):
    checks = verify(recipe, [])
    assert [c.check for c in checks if c.status == "FAIL"] == []
    if recipe == "sdpo":
        assert [c.status for c in checks if c.check.startswith("aggregation")] == ["KNOWN DEVIATION"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["dft", "bfd-packing", "t5-packing"])
def test_sft_recipes_verify(cache_dir, recipe):
    assert [c.check for c in verify(recipe, []) if c.status == "FAIL"] == []


@pytest.mark.slow
@pytest.mark.parametrize("recipe, mutation, broken", [
    ("on-policy-distillation", "beta=0.5", "loss: per-token reverse_kl"),
    ("gkd", "beta=0.9", "loss: per-token generalized_jsd"),
    ("iw-opd", "iw_opd_gamma=0.0", "loss (on-policy)"),
    ("sdft", "distillation_alpha=0.5", "loss: per-token divergence"),
    ("sdpo", "distillation_add_tail=false", "loss: top-k divergence"),
    ("sdpo", "success_reward_threshold=1.5", "self-teacher"),
    ("dft", "loss_type=nll", "loss: -mean_t sg(pi(y_t))"),
    ("bfd-packing", "packing_strategy=bfd", "no token dropped"),
    ("t5-packing", "packing_strategy=wrapped", "packed documents do not attend"),
])
def test_mutations_fail_verify(cache_dir, recipe, mutation, broken):
    failed = [c.check for c in verify(recipe, [mutation]) if c.status == "FAIL"]
    assert any(name.startswith(broken) for name in failed), failed
