"""GKD (Agarwal et al.): a generalized JSD to a teacher, on a mix of the student's own samples and dataset outputs
(TRL's experimental GKDTrainer, an SFTTrainer subclass)."""

from __future__ import annotations

from paperrl import demo
from paperrl.kinds import Task, TrainerKind


def messages_row(a: int, b: int, rng) -> dict:
    """A user turn and the right answer: the off-policy data GKD mixes with the student's own samples."""
    return {"messages": [{"role": "user", "content": f"{a}+{b}="}, {"role": "assistant", "content": str(a + b)}]}


KIND = TrainerKind(
    name="gkd",
    config_class="trl.experimental.gkd.gkd_config:GKDConfig",
    trainer_class="paperrl.kinds.distillation:GKDTrainer",
    columns=(("messages",),),
    task=Task("addition-messages", messages_row, demo.EXACT_MATCH, demo.exact_match),
    demo={**demo.OFFLINE,
          "max_steps": (100, demo.WHY),
          "max_new_tokens": (4, "demo task: a sum has at most 2 digits, plus end of text"),
          "learning_rate": (3e-4, demo.WHY),
          "per_device_train_batch_size": (16, demo.WHY)},
    verifier="paperrl.verify.distillation:verify_gkd",
    trainer_arguments="paperrl.kinds.distillation:chat_teacher_arguments",
    export_gap="paperrl's GKDTrainer subclass (its per-micro-batch token normaliser) and the teacher model",
    notes=("Needs a teacher sharing the student's vocabulary: --set teacher_model_name_or_path=<id or directory>.",
           "Data: `messages` (a user turn, then the assistant's output); a model without a chat template gets plain "
           "concatenation.",
           "TRL flips the on/off-policy coin (lmbda) once per micro-batch with Python's random module.",
           "paperrl divides each micro-batch's loss by its own output tokens (TRL counts the dataset's outputs even when "
           "the student's samples replaced them)."),
)
