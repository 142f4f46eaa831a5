"""Trainer kinds: which TRL config and trainer class each uses, and what its data needs.

Classes are named by import path so that this table costs nothing to import: the CLI's fast
paths (list, show, diff, cp) read it without importing TRL.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass

from paperrl.trl_fields import compared_values


@dataclass(frozen=True)
class TrainerKind:
    name: str
    config_class: str  # "module:Class"
    trainer_class: str
    columns: tuple[tuple[str, ...], ...]  # accepted column sets, any one of them
    closed: tuple[str, ...]  # string fields whose meaning is a closed set (loss_type, ...)
    online: bool  # generates completions and scores them with reward functions

    @property
    def closed_sets(self) -> dict[str, tuple[str, ...]]:
        """{field: accepted values}, read from the installed TRL: the strings its config and trainer
        code compare the field with (no copied list to drift on an upgrade)."""
        modules = (self.config_class.split(":")[0], self.trainer_class.split(":")[0])
        return {name: compared_values(modules, name) for name in self.closed}

    def load(self, which: str):
        module, name = getattr(self, which).split(":")
        with warnings.catch_warnings():
            # TRL warns on every import of trl.experimental; paperrl documents CPO's status itself.
            warnings.filterwarnings("ignore", message=".*experimental.*")
            return getattr(importlib.import_module(module), name)


KINDS = {
    k.name: k
    for k in (
        TrainerKind(
            "grpo", "trl.trainer.grpo_config:GRPOConfig", "trl.trainer.grpo_trainer:GRPOTrainer",
            (("prompt",),),
            ("loss_type", "importance_sampling_level", "scale_rewards", "multi_objective_aggregation"), online=True,
        ),
        TrainerKind(
            "rloo", "trl.trainer.rloo_config:RLOOConfig", "trl.trainer.rloo_trainer:RLOOTrainer",
            (("prompt",),), (), online=True,
        ),
        TrainerKind(
            "dpo", "trl.trainer.dpo_config:DPOConfig", "trl.trainer.dpo_trainer:DPOTrainer",
            (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
            ("loss_type",), online=False,
        ),
        TrainerKind(
            "cpo", "trl.experimental.cpo.cpo_config:CPOConfig", "trl.experimental.cpo.cpo_trainer:CPOTrainer",
            (("prompt", "chosen", "rejected"),),
            ("loss_type",), online=False,
        ),
        TrainerKind(
            "sft", "trl.trainer.sft_config:SFTConfig", "trl.trainer.sft_trainer:SFTTrainer",
            (("prompt", "completion"), ("messages",), ("text",)), ("loss_type",), online=False,
        ),
    )
}
