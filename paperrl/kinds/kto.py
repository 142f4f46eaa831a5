"""KTO: a prospect-theoretic loss on unpaired completions labelled desirable or undesirable."""

from paperrl import demo
from paperrl.demo import _wrong
from paperrl.kinds import Task, TrainerKind


def labelled_row(a: int, b: int, rng) -> dict:
    """One completion per sum with its binary label: the right sum (desirable) or a wrong one (undesirable),
    drawn at random so the data is balanced in expectation (KTO Eq. 8: lambda_D = lambda_U = 1 suits 1:1).
    Self-contained (only _wrong): `--format python` copies it into the exported script."""
    if rng.random() < 0.5:
        return {"prompt": f"{a}+{b}=", "completion": str(a + b), "label": True}
    return {"prompt": f"{a}+{b}=", "completion": str(_wrong(a, b, rng)), "label": False}


KIND = TrainerKind(
    name="kto",
    config_class="trl.trainer.kto_config:KTOConfig",
    trainer_class="trl.trainer.kto_trainer:KTOTrainer",
    # TRL unpairs a paired dataset itself (each pair gives one desirable and one undesirable row)
    columns=(("prompt", "completion", "label"), ("prompt", "chosen", "rejected")),
    task=Task("addition-labelled", labelled_row, demo.PREFERENCE_ACCURACY, demo.preference_accuracy),
    demo={**demo.OFFLINE,
          "per_device_train_batch_size": (16, "the KL estimate pairs each prompt with another example's completion "
                                              "in the same batch (TRL refuses a batch of 1)")},
    verifier="paperrl.verify.kto:verify_kto",
    closed=("loss_type",),
    reference="always",
    notes=("TRL estimates KTO's reference point from each batch in dataset order (train_sampling_strategy "
           "'sequential'): shuffle your data beforehand so batches mix desirable and undesirable examples.",),
)
