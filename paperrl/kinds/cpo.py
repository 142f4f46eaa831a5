"""CPO, SimPO, AlphaPO: reference-free preference losses (TRL's experimental CPOTrainer)."""

from paperrl import demo
from paperrl.kinds import TrainerKind
from paperrl.kinds.dpo import PREFERENCES

KIND = TrainerKind(
    name="cpo",
    config_class="trl.experimental.cpo.cpo_config:CPOConfig",
    trainer_class="trl.experimental.cpo.cpo_trainer:CPOTrainer",
    columns=(("prompt", "chosen", "rejected"),),
    task=PREFERENCES,
    demo=demo.OFFLINE,
    verifier="paperrl.verify.preference:verify_preference",
    closed=("loss_type",),
)
