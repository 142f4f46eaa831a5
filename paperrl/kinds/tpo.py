"""TPO: a reference-free preference term plus the NLL of a gold response (TRL's experimental TPOTrainer)."""

from paperrl import demo
from paperrl.kinds import Task, TrainerKind


def triple_row(a: int, b: int, rng) -> dict:
    """TPO's three responses, ranked gold > chosen > rejected as the authors build them (best, second best, worst):
    the right sum, a near miss (off by 1 or 2) and a far miss (off by 10). Self-contained: `--format python` copies
    it into the exported script."""
    total = a + b
    near = max(0, total + rng.choice((-2, -1, 1, 2)))
    far = max(0, total + rng.choice((-10, 10)))
    return {"prompt": f"{a}+{b}=", "reference": str(total), "chosen": str(near if near != total else total + 2),
            "rejected": str(far if far != total else total + 10)}


KIND = TrainerKind(
    name="tpo",
    config_class="trl.experimental.tpo.tpo_config:TPOConfig",
    trainer_class="trl.experimental.tpo.tpo_trainer:TPOTrainer",
    columns=(("prompt", "chosen", "rejected", "reference"), ("chosen", "rejected", "reference")),
    task=Task("addition-triples", triple_row, demo.EXACT_MATCH, demo.exact_match),
    demo=demo.OFFLINE,
    verifier="paperrl.verify.tpo:verify_tpo",
    closed=("loss_type", "truncation_mode"),
)
