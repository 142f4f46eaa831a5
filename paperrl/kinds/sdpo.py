"""SDPO (Hübotter et al.): RL with verifiable rewards where the model, re-prompted with a successful sibling attempt
or environment feedback, is its own teacher (TRL's experimental SDPOTrainer)."""

from __future__ import annotations

from paperrl import demo
from paperrl.kinds import Task, TrainerKind

KIND = TrainerKind(
    name="sdpo",
    config_class="trl.experimental.sdpo.sdpo_config:SDPOConfig",
    trainer_class="trl.experimental.sdpo.sdpo_trainer:SDPOTrainer",
    columns=(("prompt",),),
    task=Task("addition", demo.addition_row, demo.EXACT_MATCH, demo.exact_match),
    demo={**demo.ONLINE,
          "max_steps": (100, demo.WHY),
          "num_generations": (4, "embedded default: 4 samples per prompt, so most groups hold a right answer"),
          "per_device_train_batch_size": (16, demo.WHY)},
    verifier="paperrl.verify.distillation:verify_sdpo",
    closed=("distillation_mode", "teacher_model_kind", "loss_type"),
    online=True,
    notes=("Optional column `privileged_context`: environment feedback on a failed attempt (used with "
           "include_environment_feedback).",
           "The embedded tiny model was never trained to read a demonstration in its prompt: the demo shows the "
           "mechanics, not SDPO's gain."),
)
