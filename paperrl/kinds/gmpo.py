"""GMPO: GRPO with the geometric mean of the clipped token ratios (trl.experimental.gmpo)."""

from paperrl import demo
from paperrl.kinds import TrainerKind
from paperrl.kinds.grpo import ADDITION

KIND = TrainerKind(
    name="gmpo",
    config_class="trl.experimental.gmpo.gmpo_config:GMPOConfig",
    trainer_class="trl.experimental.gmpo.gmpo_trainer:GMPOTrainer",
    columns=(("prompt",),),
    task=ADDITION,
    demo={**demo.ONLINE, "temperature": (1.0, demo.WHY)},
    verifier="paperrl.verify.gmpo:verify_gmpo",
    online=True,
    reference="beta",
    notes=(
        "TRL's GMPOTrainer is experimental; it subclasses GRPOTrainer and replaces only the loss, which ignores "
        "loss_type, importance_sampling_level and the vLLM importance-sampling correction.",
        "epsilon and epsilon_high are log-space bounds: token ratios are clipped to (exp(-epsilon), exp(epsilon_high)).",
    ),
)
