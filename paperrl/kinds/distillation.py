"""On-policy distillation (Thinking Machines): the student samples, a teacher scores every token (TRL's stable
DistillationTrainer). Also home of what the teacher-based kinds share (gkd, iw-opd): the demo teacher and a chat
template for the embedded tokenizer."""

from __future__ import annotations

from pathlib import Path

from paperrl import demo
from paperrl.errors import PaperrlError
from paperrl.kinds import Task, TrainerKind

# The demo teacher: the embedded student's supervised warm-up continued (demo._warm_up: same batches, optimiser and
# stopping rule) until this share of validation sums is right. Measured: ~250-700 more steps, 10-25 s on one core;
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

    code = inspect.getsource(ensure_teacher) + repr((TEACHER_TARGET, TEACHER_MAX_STEPS))  # demo's code is in its key
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
    demo._warm_up(model, tokenizer, target=TEACHER_TARGET, max_steps=TEACHER_MAX_STEPS, seed=demo.SEED + 7)
    return demo.save_atomically(model, tokenizer, target)


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


def chat_teacher_arguments(plan, tokenizer) -> dict:
    """The trainer arguments of the kinds whose data is `messages` (gkd, iw-opd): the teacher, and a chat template
    where the model has none."""
    raw_chat_template(tokenizer)
    return {"teacher_model": teacher(plan)}


def own_token_mean(base):
    """`base` dividing each micro-batch's loss by its own tokens. TRL's GKD and IW-OPD divide by transformers'
    num_items_in_batch, counted on the dataset's labels before on-policy generation replaces them: a wrong count
    whenever the lengths differ, and 0 for prompt-only data (a NaN loss, NaN weights after one step; TRL 1.16)."""

    class Trainer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # num_items_in_batch None: token mean per micro-batch, / GA

    Trainer.__name__ = Trainer.__qualname__ = base.__name__
    return Trainer


# TRL trainers that paperrl uses with their loss divided by each micro-batch's own tokens (own_token_mean)
_TOKEN_MEAN = {"GKDTrainer": "trl.experimental.gkd.gkd_trainer", "IWOPDTrainer": "trl.experimental.iw_opd.iw_opd_trainer"}


def __getattr__(name: str):  # the subclasses are built on first use: importing this module never imports TRL
    if name in _TOKEN_MEAN:
        import importlib

        return own_token_mean(getattr(importlib.import_module(_TOKEN_MEAN[name]), name))
    raise AttributeError(name)


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
