"""GRPO and its family (GSPO, DAPO, Dr. GRPO, ...): group-relative policy optimisation on sampled completions."""

from paperrl import demo
from paperrl.kinds import Task, TrainerKind

ADDITION = Task("addition", demo.addition_row, demo.EXACT_MATCH, demo.exact_match)

KIND = TrainerKind(
    name="grpo",
    config_class="trl.trainer.grpo_config:GRPOConfig",
    trainer_class="trl.trainer.grpo_trainer:GRPOTrainer",
    columns=(("prompt",),),
    task=ADDITION,
    demo={**demo.ONLINE, "temperature": (1.0, demo.WHY)},
    verifier="paperrl.verify.policy:verify_grpo",
    closed=("loss_type", "importance_sampling_level", "scale_rewards", "multi_objective_aggregation",
            "vllm_importance_sampling_mode"),  # TRL checks the mode only at the first vLLM generation
    online=True,
    reference="beta",
)
