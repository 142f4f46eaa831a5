"""Trainer kinds: everything paperrl knows about one TRL trainer, in one module of this package.

A kind names its TRL config and trainer classes, the data columns it accepts, its demo task and
settings on the embedded default, and the verifier that checks TRL against the paper. Adding a
trainer kind is adding one module here that defines `KIND`.

Classes are named by import path ("module:Class") so that this table costs nothing to import: the
CLI's fast paths (list, show, diff, cp) read it without importing TRL or torch.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from dataclasses import dataclass, field
from typing import Callable

from paperrl.trl_fields import compared_values


@dataclass(frozen=True)
class Task:
    """A demo task on the embedded default, made from the sums a + b of demo.py's splits."""

    name: str
    row: Callable  # (a, b, rng) -> one dataset row; rng draws wrong answers
    metric: str  # what `evaluate` measures, as the run's summary names it
    evaluate: Callable  # (model, tokenizer, split) -> the metric's value on the split's sums


@dataclass(frozen=True)
class TrainerKind:
    name: str
    config_class: str  # "module:Class"
    trainer_class: str
    columns: tuple[tuple[str, ...], ...]  # accepted column sets, any one of them
    task: Task  # the demo task on the embedded default
    demo: dict  # {config field: (value, why)} for the embedded default (the recipe's own demo values win)
    verifier: str  # "module:function" (recipe_name, sets) -> [Check]: the paper's objective against TRL's
    closed: tuple[str, ...] = ()  # string fields whose meaning is a closed set (loss_type, ...)
    online: bool = False  # generates completions and scores them with reward functions
    reference: str | None = None  # keeps a frozen reference model: "always", or "beta" when its KL beta is not 0
    trainer_arguments: str | None = None  # "module:function" (plan, tokenizer) -> extra trainer arguments
    export_gap: str | None = None  # what `--format python` cannot build for this kind (it refuses, exit 2)
    notes: tuple[str, ...] = field(default=())  # what a user of this kind should know (printed by the dry run)

    @property
    def closed_sets(self) -> dict[str, tuple[str, ...]]:
        """{field: accepted values}, read from the installed TRL: the strings its config and trainer
        code compare the field with (no copied list to drift on an upgrade)."""
        modules = (self.config_class.split(":")[0], self.trainer_class.split(":")[0])
        return {name: compared_values(modules, name) for name in self.closed}

    def load(self, which: str):
        """The class or function named by one of the "module:name" fields."""
        module, name = getattr(self, which).split(":")
        with warnings.catch_warnings():
            # TRL warns on every import of trl.experimental; paperrl documents each kind's status itself.
            warnings.filterwarnings("ignore", message=".*experimental.*")
            return getattr(importlib.import_module(module), name)


def _discover() -> dict[str, TrainerKind]:
    kinds = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        kind = importlib.import_module(f"{__name__}.{info.name}").KIND
        kinds[kind.name] = kind
    return kinds


KINDS = _discover()
