"""A*-PO: offline V* from reference samples, then on-policy regression with one completion per prompt
(trl.experimental.a2po)."""

from paperrl import demo
from paperrl.errors import PaperrlError
from paperrl.kinds import TrainerKind
from paperrl.kinds.grpo import ADDITION


def trainer_arguments(plan, tokenizer) -> dict:
    """A2POTrainer tokenizes its prompts itself and generates from them in batches: it needs left padding (it loads
    its own tokenizer that way only when given none). It takes no peft_config."""
    if plan.options.lora_r is not None:
        raise PaperrlError("--lora-r: TRL's A2POTrainer takes no LoRA (peft) configuration; train without --lora-r")
    tokenizer.padding_side = "left"
    return {"processing_class": tokenizer}


KIND = TrainerKind(
    name="a2po",
    config_class="trl.experimental.a2po.a2po_config:A2POConfig",
    trainer_class="trl.experimental.a2po.a2po_trainer:A2POTrainer",
    columns=(("prompt",),),
    task=ADDITION,
    demo={**demo.ONLINE, "max_prompt_length": (16, "demo task: a prompt 'a+b=' fits in 16 characters")},
    verifier="paperrl.verify.a2po:verify_a2po",
    online=True,
    reference="always",
    trainer_arguments="paperrl.kinds.a2po:trainer_arguments",
    export_gap="A2POTrainer's left-padded tokenizer",
    notes=(
        "TRL's A2POTrainer is experimental. Stage 1 samples num_value_samples completions of every training (and "
        "evaluation) prompt from the reference model before the first step: that takes time on a large dataset.",
        "One completion per prompt: per_device_train_batch_size counts prompts; there is no num_generations.",
        "The reward must be binary (0/1), as A*-PO assumes.",
    ),
)
