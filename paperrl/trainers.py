"""Trainer kinds: which TRL config and trainer class each uses, and what its data needs.

Classes are named by import path so that this table costs nothing to import: the CLI's fast
paths (list, show, diff, cp) read it without importing TRL.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainerKind:
    name: str
    config_class: str  # "module:Class"
    trainer_class: str
    columns: tuple[tuple[str, ...], ...]  # accepted column sets, any one of them
    closed_sets: dict  # field -> accepted values, where TRL takes any string
    online: bool  # generates completions and scores them with reward functions

    def load(self, which: str):
        module, name = getattr(self, which).split(":")
        with warnings.catch_warnings():
            # TRL warns on every import of trl.experimental; paperrl documents CPO's status itself.
            warnings.filterwarnings("ignore", message=".*experimental.*")
            return getattr(importlib.import_module(module), name)


_GRPO_LOSSES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
_DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
               "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")

KINDS = {
    k.name: k
    for k in (
        TrainerKind(
            "grpo", "trl.trainer.grpo_config:GRPOConfig", "trl.trainer.grpo_trainer:GRPOTrainer",
            (("prompt",),),
            {"loss_type": _GRPO_LOSSES, "importance_sampling_level": ("token", "sequence"),
             "scale_rewards": ("group", "batch", "none", True, False),
             "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum")},
            online=True,
        ),
        TrainerKind(
            "rloo", "trl.trainer.rloo_config:RLOOConfig", "trl.trainer.rloo_trainer:RLOOTrainer",
            (("prompt",),), {}, online=True,
        ),
        TrainerKind(
            "dpo", "trl.trainer.dpo_config:DPOConfig", "trl.trainer.dpo_trainer:DPOTrainer",
            (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
            {"loss_type": _DPO_LOSSES}, online=False,
        ),
        TrainerKind(
            "cpo", "trl.experimental.cpo.cpo_config:CPOConfig", "trl.experimental.cpo.cpo_trainer:CPOTrainer",
            (("prompt", "chosen", "rejected"),),
            {"loss_type": ("sigmoid", "hinge", "ipo", "simpo", "alphapo")}, online=False,
        ),
        TrainerKind(
            "sft", "trl.trainer.sft_config:SFTConfig", "trl.trainer.sft_trainer:SFTTrainer",
            (("prompt", "completion"), ("messages",), ("text",)), {}, online=False,
        ),
    )
}
