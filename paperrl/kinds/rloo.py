"""RLOO: REINFORCE with the leave-one-out baseline on sampled completions."""

from paperrl import demo
from paperrl.kinds import TrainerKind
from paperrl.kinds.grpo import ADDITION

KIND = TrainerKind(
    name="rloo",
    config_class="trl.trainer.rloo_config:RLOOConfig",
    trainer_class="trl.trainer.rloo_trainer:RLOOTrainer",
    columns=(("prompt",),),
    task=ADDITION,
    demo=demo.ONLINE,
    verifier="paperrl.verify.policy:verify_rloo",
    online=True,
    reference="beta",
)
