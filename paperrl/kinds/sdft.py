"""SDFT (Shenfeld et al.): on-policy self-distillation from demonstrations; the model reading the demonstration
(`privileged_context`) is the teacher of the model without it (TRL's experimental SDFTTrainer)."""

from __future__ import annotations

from paperrl import demo
from paperrl.kinds import Task, TrainerKind


def demonstration_row(a: int, b: int, rng) -> dict:
    """The prompt and, for the teacher only, a demonstration: the right answer."""
    return {"prompt": f"{a}+{b}=", "privileged_context": str(a + b)}


KIND = TrainerKind(
    name="sdft",
    config_class="trl.experimental.sdft.sdft_config:SDFTConfig",
    trainer_class="trl.experimental.sdft.sdft_trainer:SDFTTrainer",
    columns=(("prompt", "privileged_context"),),
    task=Task("addition-demonstrations", demonstration_row, demo.EXACT_MATCH, demo.exact_match),
    demo={**demo.ONLINE,
          "max_steps": (100, demo.WHY),
          "num_generations": (1, "one sample per prompt, as SDFT"),
          "per_device_train_batch_size": (16, demo.WHY)},
    verifier="paperrl.verify.distillation:verify_sdft",
    closed=("distillation_mode", "teacher_model_kind"),
    notes=("Columns: `prompt` and `privileged_context` (the demonstration only the teacher sees, inserted by "
           "teacher_prompt_template).",
           "The embedded tiny model was never trained to read a demonstration in its prompt: the demo shows the "
           "mechanics, not SDFT's gain."),
)
