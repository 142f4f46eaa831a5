"""Weight averaging (BEMA): paperrl's callback against the paper's algorithm on a written trajectory."""

from __future__ import annotations

import torch

from paperrl.verify.references import ref_bema
from paperrl.verify.scenario import SEED, Check, compare, objective_values


def verify_averaging(recipe_name: str, sets: list[str]) -> list[Check]:
    from paperrl.callbacks import BEMA
    from paperrl.resolve import Options, resolve
    from paperrl import recipe as recipes

    plan = resolve(recipes.load(recipe_name, sets), Options(model="m", output_dir="/tmp/paperrl-verify"))
    args = dict(plan.callbacks[0]["args"])
    a = objective_values(plan.recipe)["averaging"]
    freq = 3
    args["update_freq"] = freq
    rng = torch.Generator().manual_seed(SEED)
    thetas = [torch.zeros(5)]
    for _ in range(12):
        thetas.append(thetas[-1] + torch.randn(5, generator=rng))
    param = torch.nn.Parameter(thetas[0].clone())
    model = torch.nn.Module()
    model.w = param
    cb = BEMA(**args)
    state = type("S", (), {"global_step": 0, "is_world_process_zero": True})()
    cb.on_train_begin(None, state, None, model=model)
    for t in range(1, len(thetas)):
        with torch.no_grad():
            param.copy_(thetas[t])
        state.global_step = t
        cb.on_step_end(None, state, None)
    eq = plan.recipe.objective.averaging.source
    return [compare("BEMA weights after 12 steps (paperrl's callback)", eq, ref_bema(thetas, a, freq), cb.bema["w"])]
