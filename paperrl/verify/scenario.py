"""What every verifier shares: the recipe's real TRL trainer on the embedded model, and the comparison."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from paperrl import demo

SEED = 1234


@dataclass
class Check:
    check: str
    equation: str
    max_abs_diff: float
    tolerance: float
    status: str = ""
    note: str = ""
    relative: float = 0.0  # max |diff| / max |paper's value|
    bound: float | None = None  # a known deviation: the recipe's max_relative

    def __post_init__(self):
        if not self.status:
            self.status = "PASS" if self.max_abs_diff <= self.tolerance else "FAIL"



def scenario_plan(recipe_name: str, sets: list[str], dynamic_sampling: dict | None = None, **config):
    """The resolved recipe with the scenario's batch; dynamic sampling off unless given settings to merge in
    (it is verified on its own scenario, _check_dynamic_sampling)."""
    from paperrl import recipe as recipes
    from paperrl.resolve import Options, resolve

    plan = resolve(recipes.load(recipe_name, sets), Options(output_dir="/tmp/paperrl-verify"))
    plan.config.update(config)
    plan.config.pop("reward_weights", None)
    plan.dynamic_sampling = {**plan.dynamic_sampling, **dynamic_sampling} if dynamic_sampling else None
    return plan


def real_trainer(plan, reward_funcs=(), rows=None):
    """The recipe's real TRL trainer on the embedded model; on `rows` when given, else on the demo task."""
    from datasets import Dataset

    from paperrl import data as datamod
    from paperrl.builder import build_trainer

    demo.one_thread()
    demo.ensure_model()
    torch.manual_seed(SEED)
    data = datamod.load(plan) if rows is None else Dataset.from_list(rows)
    trainer = build_trainer(plan, data, list(reward_funcs))
    trainer.model.train()
    return trainer


def grads(model, loss) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad.flatten() for p in model.parameters() if p.requires_grad and p.grad is not None]
    out = torch.cat(grads) if grads else torch.zeros(1)
    model.zero_grad(set_to_none=True)
    return out


def compare(name, equation, ours: torch.Tensor, theirs: torch.Tensor, rel=1e-4, note="") -> Check:
    diff = (ours.detach().float() - theirs.detach().float()).abs().max().item() if ours.numel() else 0.0
    scale = max(ours.detach().abs().max().item(), 1e-6)
    return Check(name, equation, diff, 1e-6 + rel * scale, note=note, relative=diff / scale)


def perturb(model, scale=0.02):
    with torch.no_grad():
        rng = torch.Generator().manual_seed(SEED + 1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=rng) * scale)


def objective_values(recipe) -> dict:
    return {k: v.value for k, v in recipe.objective if v is not None}
