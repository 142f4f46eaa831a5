"""ORPO: SFT plus an odds-ratio preference term, no reference model (TRL's experimental ORPOTrainer)."""

from paperrl import demo
from paperrl.kinds import TrainerKind
from paperrl.kinds.dpo import PREFERENCES

KIND = TrainerKind(
    name="orpo",
    config_class="trl.experimental.orpo.orpo_config:ORPOConfig",
    trainer_class="trl.experimental.orpo.orpo_trainer:ORPOTrainer",
    columns=(("prompt", "chosen", "rejected"),),
    task=PREFERENCES,
    demo=demo.OFFLINE,
    verifier="paperrl.verify.orpo:verify_orpo",
)
