"""On-policy distillation (Thinking Machines): the student samples, a teacher scores every token (TRL's stable
DistillationTrainer). Also home of what the teacher-based kinds share (gkd, iw-opd): the demo teacher and a chat
template for the embedded tokenizer."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from paperrl import demo
from paperrl.errors import PaperrlError
from paperrl.kinds import Task, TrainerKind

# The demo teacher: the embedded student's supervised warm-up continued (same batches, optimiser and stopping rule as
# demo._warm_up) until this share of validation sums is right. Measured: ~250-700 more steps, 10-25 s on one core;
# student ~0.34 validation / ~0.48 test -> teacher >= 0.85 validation / ~0.8-0.9 test. A teacher equal to the student
# gives every divergence 0 (measured): nothing to distil.
TEACHER_TARGET = 0.85
TEACHER_MAX_STEPS = 3000

# The embedded tokenizer has no chat template; TRL's GKD and IW-OPD collators need one for `messages`. Plain
# concatenation, EOS after each answer: exactly the text the student was warmed up on ("12+7=" + "19" + EOS).
RAW_CHAT_TEMPLATE = ("{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'assistant' %}{{ eos_token }}"
                     "{% endif %}{% endfor %}")


def teacher_dir() -> Path:
    import hashlib
    import inspect

    code = inspect.getsource(ensure_teacher) + repr((TEACHER_TARGET, TEACHER_MAX_STEPS))
    key = hashlib.sha256((demo.build_key() + code).encode()).hexdigest()[:12]
    return demo.cache_dir() / f"tiny-qwen2-addition-teacher-{key}"


def ensure_teacher() -> Path:
    """The demo teacher, built once from the embedded student (seconds) and cached beside it; nothing downloaded."""
    target = teacher_dir()
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    student = demo.ensure_model()
    demo.one_thread()
    torch.manual_seed(demo.SEED + 7)
    tokenizer = AutoTokenizer.from_pretrained(student)
    model = AutoModelForCausalLM.from_pretrained(student)
    train, validation = ([demo.completion_row(a, b, None) for a, b in demo._pairs(split)]
                         for split in ("train", "validation"))
    rng = random.Random(demo.SEED + 7)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(1, TEACHER_MAX_STEPS + 1):
        model.train()
        ids, mask, lab = demo._batch(tokenizer, rng.sample(train, 64))
        model(input_ids=ids, attention_mask=mask, labels=lab).loss.backward()
        opt.step()
        opt.zero_grad()
        if step % demo.WARM_UP_CHECK_EVERY == 0:
            model.eval()
            if demo._answers_right(model, tokenizer, validation) >= TEACHER_TARGET:
                break
    model.eval()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)  # atomic: a half-built teacher is never seen
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process built it first
    return target


def teacher(plan) -> str:
    """The teacher of a run: the recipe's or user's `teacher_model_name_or_path`, else the demo teacher on the embedded
    default; a run on the user's model without a teacher is a user error (one line)."""
    named = plan.config.get("teacher_model_name_or_path")
    if named:
        return str(named)
    if plan.demo_mode:
        return str(ensure_teacher())
    raise PaperrlError(f"{plan.recipe.name}: distillation needs a teacher with the student's vocabulary; pass "
                       "--set teacher_model_name_or_path=<model id or directory>")


def raw_chat_template(tokenizer) -> None:
    """Give a tokenizer without a chat template the plain-concatenation one (TRL's `messages` collators need one)."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = RAW_CHAT_TEMPLATE


def trainer_arguments(plan, tokenizer) -> dict:
    tokenizer.padding_side = "left"  # DistillationTrainer's prompts are left-padded (its docstring requires it)
    return {"teacher_model": teacher(plan)}


def prompt_row(a: int, b: int, rng) -> dict:
    """A prompt and its answer; the trainer reads only the prompt (the answer is for the demo's evaluation)."""
    return {"prompt": f"{a}+{b}=", "solution": str(a + b)}


KIND = TrainerKind(
    name="distillation",
    config_class="trl.trainer.distillation_config:DistillationConfig",
    trainer_class="trl.trainer.distillation_trainer:DistillationTrainer",
    columns=(("prompt",),),
    task=Task("addition-prompts", prompt_row, demo.EXACT_MATCH, demo.exact_match),
    demo={**demo.ONLINE,
          "max_steps": (100, demo.WHY),
          "per_device_train_batch_size": (16, demo.WHY)},
    verifier="paperrl.verify.distillation:verify_distillation",
    trainer_arguments="paperrl.kinds.distillation:trainer_arguments",
    export_gap="the teacher model the distillation trainer is given (on the embedded default, paperrl's own)",
    notes=("Needs a teacher sharing the student's vocabulary: --set teacher_model_name_or_path=<id or directory> "
           "(the embedded default builds its own: the tiny model trained further).",
           "Always on-policy (TRL 1.16 has no lmbda here): the student generates every batch.",),
)
