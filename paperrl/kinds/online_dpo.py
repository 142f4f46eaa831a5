"""Online DPO (OAIF): DPO on two samples of the current policy per prompt, ordered online by a reward."""

from paperrl import demo
from paperrl.kinds import TrainerKind
from paperrl.kinds.grpo import ADDITION

KIND = TrainerKind(
    name="online-dpo",
    config_class="trl.experimental.online_dpo.online_dpo_config:OnlineDPOConfig",
    trainer_class="trl.experimental.online_dpo.online_dpo_trainer:OnlineDPOTrainer",
    columns=(("prompt",),),
    task=ADDITION,
    demo={**demo.COMMON,
          "max_steps": (100, demo.WHY),
          "max_new_tokens": (4, "demo task: a sum has at most 2 digits, plus end of text"),
          "learning_rate": (3e-4, demo.WHY),
          "per_device_train_batch_size": (16, "embedded default: 16 prompts (32 completions) per micro-batch"),
          "temperature": (1.0, demo.WHY)},
    verifier="paperrl.verify.online_dpo:verify_online_dpo",
    closed=("loss_type",),
    online=True,
    reference="always",
    notes=("per_device_train_batch_size counts prompts: TRL samples two completions for each.",
           "TRL 1.16's OnlineDPOTrainer takes reward functions or reward models (no judge): the higher reward is "
           "the chosen completion, a tie goes to the first sample."),
)
