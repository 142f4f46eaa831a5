"""IW-OPD (Xie et al.): on-policy distillation whose per-token advantages are weighted by how little the prefix has
drifted from the teacher (TRL's experimental IWOPDTrainer)."""

from __future__ import annotations

from paperrl import demo
from paperrl.kinds import Task, TrainerKind


def prompt_messages_row(a: int, b: int, rng) -> dict:
    """A user turn only: the student writes every output (IW-OPD is on-policy)."""
    return {"messages": [{"role": "user", "content": f"{a}+{b}="}]}


KIND = TrainerKind(
    name="iw-opd",
    config_class="trl.experimental.iw_opd.iw_opd_config:IWOPDConfig",
    trainer_class="paperrl.kinds.distillation:IWOPDTrainer",
    columns=(("messages",),),
    task=Task("addition-prompt-messages", prompt_messages_row, demo.EXACT_MATCH, demo.exact_match),
    demo={**demo.OFFLINE,
          "max_steps": (100, demo.WHY),
          "max_completion_length": (4, "demo task: a sum has at most 2 digits, plus end of text"),
          "learning_rate": (3e-4, demo.WHY),
          "per_device_train_batch_size": (16, demo.WHY)},
    verifier="paperrl.verify.distillation:verify_iw_opd",
    closed=("distillation_objective",),
    trainer_arguments="paperrl.kinds.distillation:chat_teacher_arguments",
    export_gap="paperrl's IWOPDTrainer subclass (its per-micro-batch token normaliser) and the teacher model",
    notes=("Needs a teacher sharing the student's vocabulary and tokenizer: --set teacher_model_name_or_path=<id or "
           "directory>.",
           "paperrl divides each micro-batch's loss by its own completion tokens: TRL 1.16 divides prompt-only data by "
           "0 (NaN).",
           "The paper's PPO machinery (clip, dual clip, inner epochs, entropy and KL terms) is not in IWOPDConfig: "
           "on-policy with one update per rollout the clipped gradient equals TRL's."),
)
