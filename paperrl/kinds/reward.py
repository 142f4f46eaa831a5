"""Reward modelling: a sequence classifier with one output trained on preference pairs (TRL's RewardTrainer).

TRL loads the causal-LM checkpoint as AutoModelForSequenceClassification(num_labels=1): the backbone is kept, the
LM head dropped and a new score head initialised after set_seed(args.seed). A `margin` column enters the loss
(Llama 2 Eq. 2); paperrl also maps a `rating` column to margins with the recipe's table (objective
reward_model.margins), the dataset.map the Paper Index leaves to the user.
"""

from __future__ import annotations

import random

from paperrl import demo
from paperrl.demo import _wrong
from paperrl.kinds import Task, TrainerKind



def rated_row(a: int, b: int, rng: random.Random) -> dict:
    """A preference pair with a stand-in for the annotator's 4-point rating: the farther the wrong sum is from the
    right one, the stronger the preference (off by 10: significantly better, by 2: better, by 1: slightly better).
    The same pair as demo.preference_row; self-contained (only _wrong): `--format python` copies it."""
    wrong = _wrong(a, b, rng)
    off = abs(wrong - (a + b))
    rating = "significantly better" if off >= 5 else "better" if off >= 2 else "slightly better"
    return {"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(wrong), "rating": rating}


def scores(model, tokenizer, rows: list[dict], answer: str):
    """r(x, y) of each row's prompt + answer + EOS: the score head at the last real token (right padding)."""
    import torch

    seqs = [tokenizer(r["prompt"] + r[answer], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            for r in rows]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [tokenizer.pad_token_id] * (width - len(s)) for s in seqs])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(s) for s in seqs])[:, None]).long()
    device = next(model.parameters()).device
    hidden = model.model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    last = hidden[torch.arange(len(seqs)), mask.sum(-1).to(device) - 1]
    return model.score(last).squeeze(-1).float().cpu()


def pairwise_accuracy(model, tokenizer, split: str) -> float:
    """Share of the split's pairs whose right sum the reward model scores above the wrong one."""
    rng = random.Random(demo.SEED + 1)
    pairs = [demo.preference_row(a, b, rng) for a, b in demo._pairs(split)]
    return (scores(model, tokenizer, pairs, "chosen") > scores(model, tokenizer, pairs, "rejected")).float().mean().item()


PAIRWISE_ACCURACY = "pairwise accuracy of the reward model (r(x, right sum) > r(x, wrong sum))"


def margins(recipe) -> dict | None:
    """The recipe's rating -> margin table (objective reward_model.margins), None without one."""
    entry = recipe.objective.reward_model
    return (entry.value or {}).get("margins") if entry is not None else None


def trainer_arguments(plan, tokenizer) -> dict:
    """The rating table for RewardTrainer below; a LoRA adapter for a sequence classifier (the score head trained)."""
    out = {"margins": margins(plan.recipe)}
    if plan.options.lora_r is not None:
        from peft import LoraConfig

        out["peft_config"] = LoraConfig(r=plan.options.lora_r, lora_alpha=plan.options.lora_alpha or 2 * plan.options.lora_r,
                                        use_dora=getattr(plan.options, "dora", False), target_modules="all-linear",
                                        task_type="SEQ_CLS", modules_to_save=["score"])
    return out


def _reward_trainer():
    """TRL's RewardTrainer that turns a `rating` column into TRL's `margin` column with the recipe's table (Llama 2
    Table 27), or drops it when the recipe has no margins (a plain Bradley-Terry model)."""
    from trl.trainer.reward_trainer import RewardTrainer as TRLRewardTrainer

    from paperrl.errors import PaperrlError

    class RewardTrainer(TRLRewardTrainer):
        def __init__(self, *args, margins: dict | None | bool = False, train_dataset=None, **kwargs):
            if train_dataset is not None and "rating" in train_dataset.column_names:
                if margins is False:  # built without paperrl's trainer_arguments (an exported script): no table
                    raise PaperrlError("the data has a `rating` column but no rating -> margin table was given: pass "
                                       "margins={rating: margin} (the recipe's objective reward_model.margins), or "
                                       "None for no margin")
                if margins:
                    unknown = sorted(set(train_dataset["rating"]) - set(margins))
                    if unknown:
                        raise PaperrlError(f"rating {unknown[0]!r} has no margin in the recipe's table "
                                           f"(objective reward_model.margins: {', '.join(margins)})")
                    train_dataset = train_dataset.map(lambda r: {"margin": float(margins[r["rating"]])})
                train_dataset = train_dataset.remove_columns("rating")
            super().__init__(*args, train_dataset=train_dataset, **kwargs)

    return RewardTrainer


def __getattr__(name: str):  # the subclass is built on first use: importing this module never imports TRL
    if name == "RewardTrainer":
        return _reward_trainer()
    raise AttributeError(name)


KIND = TrainerKind(
    name="reward",
    config_class="trl.trainer.reward_config:RewardConfig",
    trainer_class="paperrl.kinds.reward:RewardTrainer",
    columns=(("prompt", "chosen", "rejected", "margin"), ("prompt", "chosen", "rejected", "rating"),
             ("chosen", "rejected", "margin"), ("chosen", "rejected", "rating"),
             ("prompt", "chosen", "rejected"), ("chosen", "rejected")),
    task=Task("addition-rated-preferences", rated_row, PAIRWISE_ACCURACY, pairwise_accuracy),
    demo={**demo.OFFLINE, "learning_rate": (1e-3, "a new, randomly initialised score head on a tiny model")},
    verifier="paperrl.verify.reward:verify_reward",
    trainer_arguments="paperrl.kinds.reward:trainer_arguments",
    export_gap="paperrl's RewardTrainer subclass (the recipe's rating-to-margin table)",
    notes=("The model is loaded as a sequence classifier with one output (a new score head, seeded): pass a causal "
           "LM or a reward model checkpoint. The trained model can score completions for grpo/rloo/online-dpo "
           "(--reward model:<dir>).",
           "A `margin` column enters the loss as is; a `rating` column is mapped to margins by the recipe's table."),
)
