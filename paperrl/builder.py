"""The real TRL trainer for a resolved plan: inputs checked together first, then the trainer built."""

from __future__ import annotations

import os
import warnings

from paperrl import data as datamod
from paperrl import launch
from paperrl.errors import PaperrlError
from paperrl.resolve import Plan, build_config
from paperrl.rundir import check_output_dir, rank


def load_inputs(plan: Plan):
    """Dataset and rewards, checked together before any model is loaded."""
    from paperrl import rewards as rewardmod

    problems = check_output_dir(plan.config["output_dir"], plan.options) \
        if not os.environ.get("PAPERRL_PLAN") and rank() == 0 else []
    problems += launch.missing_extras(plan.options)
    funcs, needs = [], {}
    if plan.kind.online and not plan.rewards:
        problems.append(f"{plan.recipe.name}: this recipe has no reward function for your data (the paper trains "
                        "a reward model); pass --reward module:function, --reward path/to/file.py:function or "
                        "--reward model:<reward model id or directory>")
    if plan.kind.online:
        try:
            funcs, needs = rewardmod.build(plan.rewards)
        except PaperrlError as exc:
            problems += exc.problems
    try:
        dataset = datamod.load(plan)
        problems += datamod.check_columns(dataset, plan.kind, needs, plan.dataset)
    except PaperrlError as exc:
        problems += exc.problems
        dataset = None
    if problems:
        raise PaperrlError(*problems)
    return dataset, funcs


def peft_config(plan: Plan):
    if plan.options.lora_r is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=plan.options.lora_r, lora_alpha=plan.options.lora_alpha or 2 * plan.options.lora_r,
                      use_dora=plan.options.dora, target_modules="all-linear", task_type="CAUSAL_LM")


def _callbacks(plan: Plan):
    """The recipe's callbacks (names and arguments were checked against their classes when it was read)."""
    import importlib

    from paperrl.recipe import CALLBACKS

    out = []
    for spec in plan.callbacks:
        module, name = CALLBACKS[spec["name"]].split(":")
        out.append(getattr(importlib.import_module(module), name)(**spec["args"]))
    return out


def build_trainer(plan: Plan, dataset, reward_funcs, extra_callbacks=()):
    from transformers import AutoTokenizer

    config = build_config(plan)
    tokenizer = AutoTokenizer.from_pretrained(plan.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = datamod.prepare(dataset, plan, tokenizer)
    kwargs = dict(model=plan.model, args=config, train_dataset=dataset, processing_class=tokenizer,
                  callbacks=[*_callbacks(plan), *extra_callbacks], peft_config=peft_config(plan))
    if kwargs["peft_config"] is None:
        del kwargs["peft_config"]
    if plan.kind.online:
        kwargs["reward_funcs"] = reward_funcs
    if plan.kind.trainer_arguments:  # what this kind's trainer needs beyond the common ones (a teacher, ...)
        kwargs.update(plan.kind.load("trainer_arguments")(plan, tokenizer))
    cls = plan.kind.load("trainer_class")
    if plan.dynamic_sampling:
        from paperrl.sampling import with_dynamic_sampling

        cls = with_dynamic_sampling(cls, plan.dynamic_sampling)
    if plan.recipe.exact_token_normaliser and plan.recipe.exact_token_normaliser.value:
        from paperrl.normaliser import with_exact_token_normaliser

        cls = with_exact_token_normaliser(cls)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental.*")
        trainer = cls(**kwargs)
    _quiet_progress(trainer)
    return trainer


def _quiet_progress(trainer) -> None:
    """Keep TRL's progress bar but not its dump of every log dict (metrics.jsonl has them)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class Progress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.pop_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(Progress())


# ---------------------------------------------------------------- the run
