"""Supervised fine-tuning (BEMA, DFT, packing): prompt-completion pairs, messages or plain text."""

from paperrl import demo
from paperrl.kinds import Task, TrainerKind

KIND = TrainerKind(
    name="sft",
    config_class="trl.trainer.sft_config:SFTConfig",
    trainer_class="trl.trainer.sft_trainer:SFTTrainer",
    columns=(("prompt", "completion"), ("messages",), ("text",)),
    task=Task("addition-sft", demo.completion_row, demo.EXACT_MATCH, demo.exact_match),
    demo={**demo.OFFLINE, "per_device_train_batch_size": (16, demo.WHY)},
    verifier="paperrl.verify.sft:verify_sft",  # by the objective: BEMA (averaging), DFT, packing
    closed=("loss_type",),
)
