"""`paperrl verify`: does TRL compute the paper's objective for this recipe?

For each recipe the real TRL trainer is built on the embedded tiny model and fed a scenario written
by hand (below: completions, terminations, rewards, old log-probabilities), never sampled, that
exercises what the paper changes: ratios of 1, inside and beyond each clip range, completions of
different lengths, truncated completions, groups with equal and with different rewards. What TRL
computes (advantages, masks, loss, gradient with respect to every parameter, rewards, weight
averages) is compared with a reference implementation of the paper's equations written here in
plain torch, with the constants the paper states (the recipe's `objective` section), never with
TRL's code or the run's TRL settings. The weights only turn tokens into log-probabilities, which
both sides compute from the same weights: the verdicts do not depend on the machine.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from paperrl.errors import PaperrlError
from paperrl.verify.scenario import Check


def verify(recipe_name: str, sets: list[str]) -> list[Check]:
    from paperrl import recipe as recipes

    recipe = recipes.load(recipe_name, sets)
    if not any(v is not None for _, v in recipe.objective):
        raise PaperrlError(f"{recipe_name}: the recipe states no `objective`; nothing to verify")
    checks = recipe.kind.load("verifier")(recipe_name, sets)
    if not checks:  # a verifier that checks nothing must not read as a pass
        checks = [Check("the recipe's objective", "", float("inf"), 0.0, note="no check was run")]
    from paperrl.verify_pipeline import verify_pipeline  # the rest of the pipeline: data, verifier, batch, schedule

    return checks + verify_pipeline(recipe_name, sets)


def main(recipe: str | None, all_: bool, sets: list[str], fmt: str) -> int:
    from paperrl import recipe as recipes

    if fmt not in ("table", "json"):
        raise PaperrlError(f"--format {fmt}: accepted: table, json")
    if all_ == (recipe is not None):
        raise PaperrlError("paperrl verify: give one RECIPE or --all")
    names = list(recipes.available()) if all_ else [recipe]
    _quiet()
    results = {name: verify(name, sets) for name in names}
    ok = all(c.status != "FAIL" for checks in results.values() for c in checks)
    if fmt == "json":
        sys.stdout.write(json.dumps({n: [asdict(c) for c in cs] for n, cs in results.items()}, indent=2) + "\n")
    else:
        _print(results)
    return 0 if ok else 1


def _quiet():
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    logging.getLogger("trl").setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def _print(results):
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 180)
    for name, checks in results.items():
        table = Table(title=f"paperrl verify {name}", show_lines=False)
        for col in ("check", "paper", "max |diff|", "relative", "tolerance", "bound", "result"):
            table.add_column(col, overflow="fold")
        for c in checks:
            colour = {"PASS": "green", "FAIL": "red"}.get(c.status, "yellow")
            table.add_row(c.check + (f"\n[dim]{c.note}[/dim]" if c.note else ""), c.equation, f"{c.max_abs_diff:.3g}",
                          f"{c.relative:.1%}", f"{c.tolerance:.3g}",
                          f"{c.bound:.0%}" if c.bound is not None else "", f"[{colour}]{c.status}[/{colour}]")
        console.print(table)
