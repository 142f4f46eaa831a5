"""DPO and its family (IPO, Robust DPO, RPO, ...): offline preference pairs against a frozen reference."""

from paperrl import demo
from paperrl.kinds import Task, TrainerKind

PREFERENCES = Task("addition-preferences", demo.preference_row, demo.PREFERENCE_ACCURACY, demo.preference_accuracy)

KIND = TrainerKind(
    name="dpo",
    config_class="trl.trainer.dpo_config:DPOConfig",
    trainer_class="trl.trainer.dpo_trainer:DPOTrainer",
    columns=(("prompt", "chosen", "rejected"), ("chosen", "rejected")),
    task=PREFERENCES,
    demo=demo.OFFLINE,
    verifier="paperrl.verify.preference:verify_preference",
    closed=("loss_type",),
    reference="always",
)
