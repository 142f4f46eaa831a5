"""`paperrl reproduce`: each paper's claims as pre-registered experiments on the embedded default.

A claim file, paperrl/claims/<recipe>.yaml, declares before anything runs: the claim quoted with its
section, the two arms as `--set` differences from the recipe, the task, the metric read from each run's
metrics.jsonl or summary.json, the number of seeds, the tuning seeds (kept apart from the reporting seeds)
and the decision rule. Every arm x seed is a normal run of the real CLI (`paperrl RECIPE --set seed=S
...`) in its own run directory; the verdict is computed here from the per-seed values, and a figure of
them is written beside. Claim files are discovered, like recipes: adding one is adding a file. Two arms with
the same `set` are the same runs, trained once and read with two metric keys (an arm's `key`), e.g. BEMA's
average against the raw iterate of the same run.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Literal, NamedTuple, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paperrl.errors import PaperrlError, closest

CLAIM_DIR = Path(str(resources.files("paperrl") / "claims"))
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
# two-sided 95% Student t quantiles by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Arm(_Strict):
    name: str  # a directory name: lower-case letters, digits, '-' and '.'
    set: list[str] = []  # --set NAME=VALUE differences from the recipe
    key: Optional[str] = None  # the metric's key for this arm where it differs (two measures of the same runs)


class Arms(_Strict):
    treatment: Arm  # what the paper proposes
    control: Arm  # what the paper compares it with


class Metric(_Strict):
    name: str  # what the number means, for the table and the figure
    file: Literal["metrics.jsonl", "summary.json"]
    key: str  # a metrics.jsonl key (TRL's name), or a dotted path into summary.json such as eval.after
    reduce: Literal["mean", "last"] = "mean"  # over the logged steps >= from_step (metrics.jsonl only)
    from_step: int = Field(1, ge=1)
    divide_by: Optional[str] = None  # a TRL config field of the run (paperrl.json), e.g. beta


class Rule(_Strict):
    statistic: Literal["paired_mean_difference"]  # mean over seeds of (treatment - control) at the same seed
    interval: Literal[0.95]  # two-sided Student t-interval over seeds
    expect: Literal["higher", "lower"]  # the paper's direction for treatment against control


class Claim(_Strict):
    id: str  # a directory name, as an arm's
    claim: str  # the paper's words
    source: str  # section, figure or table
    toy: str  # why the toy task can (or cannot) expose the mechanism
    task: str  # the embedded default's demo task, demo:<name>
    arms: Arms
    steps: int = Field(ge=1)  # optimizer steps of every run
    metric: Metric
    seeds: int = Field(ge=2)  # reporting seeds: 1..seeds
    tuning_seeds: list[int] = Field(min_length=1)  # the seeds the settings were chosen on, recorded
    rule: Rule


class ClaimFile(_Strict):
    claims: list[Claim] = Field(min_length=1)


# ---------------------------------------------------------------- claim files


def available() -> dict[str, Path]:
    """{recipe: claim file} of the shipped claim files, claims/<recipe>.yaml."""
    return {p.stem: p for p in sorted(CLAIM_DIR.glob("*.yaml"))}


def load(path: Path) -> list[Claim]:
    """Read and check a claim file: every problem at once, one line each naming the file and the field."""
    from paperrl import catalog, demo
    from paperrl import recipe as recipes

    where = f"claims/{path.name}" if CLAIM_DIR in path.parents else str(path)
    if path.stem not in catalog.available():
        raise PaperrlError(f"{where}: no recipe named '{path.stem}'{closest(path.stem, catalog.available())}; "
                           "a claim file is named after its recipe")
    raw = catalog.read_raw(path)
    try:
        claims = ClaimFile.model_validate(raw).claims
    except ValidationError as exc:
        raise PaperrlError(*recipes._pydantic_problems(where, exc, set())) from None
    trainer = catalog.read_raw(catalog.available()[path.stem])["trainer"]
    problems = []
    for i, c in enumerate(claims):
        at = f"{where}: claims.{i}"
        if c.task != demo.task_name(trainer):
            problems.append(f"{at}.task: {c.task!r}; accepted: {demo.task_name(trainer)!r} (the embedded default's task)")
        overlap = sorted(set(c.tuning_seeds) & set(reporting_seeds(c.seeds)))
        if overlap:
            problems.append(f"{at}.tuning_seeds: {overlap} are also reporting seeds (1..{c.seeds}); "
                            "tune on other seeds")
        for field, name in (("id", c.id), ("arms.treatment.name", c.arms.treatment.name),
                            ("arms.control.name", c.arms.control.name)):
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name):
                problems.append(f"{at}.{field}: {name!r}; accepted: lower-case letters, digits, '-' and '.'")
        if c.arms.treatment.name == c.arms.control.name:
            problems.append(f"{at}.arms: treatment and control share the name {c.arms.treatment.name!r}")
        if shares_runs(c) and arm_metric(c.metric, c.arms.treatment).key == arm_metric(c.metric, c.arms.control).key:
            problems.append(f"{at}.arms: the same --set and the same metric key: the difference is 0 by "
                            "construction; give the control its own set or key")
        for side in ("treatment", "control"):
            try:
                recipes.load(path.stem, getattr(c.arms, side).set)
            except PaperrlError as exc:
                problems += [f"{at}.arms.{side}.set: {p}" for p in exc.problems]
    if len({c.id for c in claims}) < len(claims):
        problems.append(f"{where}: claims: two claims share an id")
    if problems:
        raise PaperrlError(*problems)
    return claims


def reporting_seeds(n: int) -> list[int]:
    return list(range(1, n + 1))


def shares_runs(claim: Claim) -> bool:
    """Arms with the same --set differences are the same runs, trained once and read with two metric keys."""
    return claim.arms.treatment.set == claim.arms.control.set


def arm_metric(metric: Metric, arm: Arm) -> Metric:
    return metric.model_copy(update={"key": arm.key}) if arm.key else metric


# ---------------------------------------------------------------- the decision rule


def t975(df: int) -> float:
    """The two-sided 95% Student t quantile (the table's nearest smaller df: a conservative interval)."""
    return _T975[max(k for k in _T975 if k <= df)]


def decide(treatment: list[float], control: list[float], expect: str) -> dict:
    """The paired mean difference over seeds with its 95% t-interval, and the verdict it gives."""
    diffs = [t - c for t, c in zip(treatment, control, strict=True)]
    n = len(diffs)
    effect = statistics.fmean(diffs)
    half = t975(n - 1) * statistics.stdev(diffs) / math.sqrt(n) if n > 1 else math.inf
    low, high = effect - half, effect + half
    sign = 1 if expect == "higher" else -1
    if min(sign * low, sign * high) > 0:
        verdict = "reproduced"
    elif max(sign * low, sign * high) < 0:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return {"differences": diffs, "effect": effect, "interval": [low, high], "verdict": verdict}


def rule_text(rule: Rule) -> str:
    return (f"mean over seeds of (treatment - control) at the same seed, with a two-sided {rule.interval:.0%} "
            f"t-interval: excludes 0 on the {rule.expect} side -> reproduced; on the other side -> not "
            "reproduced; contains 0 -> inconclusive")


# ---------------------------------------------------------------- runs


def read_metric(run_dir: Path, metric: Metric) -> float:
    """The metric of one finished run, from its own files."""
    if metric.file == "summary.json":
        value = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        for part in metric.key.split("."):
            value = value[part]
    else:
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
        values = [r[metric.key] for r in rows if metric.key in r and r["step"] >= metric.from_step]
        if not values:
            raise PaperrlError(f"{run_dir}/metrics.jsonl: no '{metric.key}' logged from step {metric.from_step}")
        value = statistics.fmean(values) if metric.reduce == "mean" else values[-1]
    if metric.divide_by:
        value /= json.loads((run_dir / "paperrl.json").read_text(encoding="utf-8"))["config"][metric.divide_by]
    return float(value)


def scaled_metric(claim: Claim, steps: int) -> Metric:
    """The claim's metric for runs of `steps` steps: a shorter smoke run reads the same share of its steps."""
    return claim.metric.model_copy(update={"from_step": 1 + (claim.metric.from_step - 1) * steps // claim.steps})


def _command(recipe: str, claim: Claim, arm: Arm, seed: int, run_dir: Path, max_steps: int | None) -> list[str]:
    sets = [a for s in [f"seed={seed}", *arm.set] for a in ("--set", s)]
    return [sys.executable, "-m", "paperrl", recipe, *sets, "--max-steps", str(max_steps or claim.steps),
            "--output-dir", str(run_dir), "--overwrite"]


def _train(command: list[str], run_dir: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = run_dir.with_suffix(".log")
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        raise PaperrlError(f"{' '.join(command[2:])}: exit {code}; its output is in {log}")


class Run(NamedTuple):
    paper: str
    claim: Claim
    arm: Arm
    seed: int
    dir: Path
    command: list[str]


def reproduce(plans: list[tuple[str, Claim]], output_dir: Path, seeds: int | None = None,
              max_steps: int | None = None, jobs: int = 1) -> dict:
    """Run every arm x seed of each (recipe, claim), then decide each claim and draw its figure."""
    runs = []
    for name, claim in plans:
        for seed in reporting_seeds(seeds or claim.seeds):
            for side in ("treatment", "control"):
                arm = getattr(claim.arms, side)
                owner = claim.arms.treatment if side == "control" and shares_runs(claim) else arm
                run_dir = output_dir / name / claim.id / owner.name / f"seed-{seed}"
                runs.append(Run(name, claim, arm, seed, run_dir, _command(name, claim, arm, seed, run_dir, max_steps)))
    trained = list({r.dir: r for r in runs[::-1]}.values())[::-1]  # each directory once, by its first arm
    started = time.perf_counter()
    done = []

    def train(run: Run) -> None:
        run.dir.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        _train(run.command, run.dir)
        done.append(run)
        print(f"[{len(done)}/{len(trained)}] {run.paper} {run.claim.id}: {run.arm.name} seed {run.seed} "
              f"({time.perf_counter() - t0:.0f} s, {time.perf_counter() - started:.0f} s in all)", file=sys.stderr)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(train, trained))
    results = [_result(name, claim, [r for r in runs if r.claim is claim], output_dir, max_steps)
               for name, claim in plans]
    report = {"command": "paperrl " + " ".join(sys.argv[1:]), "output_dir": str(output_dir),
              "wall_s": round(time.perf_counter() - started, 1), "claims": results}
    (output_dir / "reproduce.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _result(name: str, claim: Claim, runs: list[Run], output_dir: Path, max_steps: int | None) -> dict:
    arms = (claim.arms.treatment, claim.arms.control)
    steps = max_steps or claim.steps
    metric = scaled_metric(claim, steps)
    values = {a.name: [read_metric(r.dir, arm_metric(metric, a)) for r in runs if r.arm is a] for a in arms}
    seeds = sorted({r.seed for r in runs})
    result = {
        "paper": name, "id": claim.id,
        "claim": f"\"{claim.claim}\" ({claim.source})", "toy": claim.toy, "task": claim.task,
        "arms": {side: a.model_dump(exclude_none=True) for side, a in zip(("treatment", "control"), arms)},
        "metric": metric.model_dump(exclude_none=True),
        "rule": {**claim.rule.model_dump(), "text": rule_text(claim.rule)},
        "steps": steps, "seeds": seeds, "tuning_seeds": claim.tuning_seeds,
        "values": values,
        **decide(values[arms[0].name], values[arms[1].name], claim.rule.expect),
        "runs": {a.name: [str(r.dir) for r in runs if r.arm is a] for a in arms},
    }
    result["figure"] = str(figure(result, output_dir / f"{name}-{claim.id}.png"))
    return result


def figure(result: dict, path: Path) -> Path:
    """Per-seed values of both arms, paired by seed, with the arms' means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["values"])
    fig, ax = plt.subplots(figsize=(4.6, 3.6), dpi=120)
    for i, seed in enumerate(result["seeds"]):
        ax.plot([0, 1], [result["values"][n][i] for n in names], "o-", color="0.6", lw=1)
        ax.annotate(f"seed {seed}", (1, result["values"][names[1]][i]), xytext=(6, 0), textcoords="offset points",
                    fontsize=7, va="center")
    for x, n in enumerate(names):
        ax.hlines(statistics.fmean(result["values"][n]), x - 0.15, x + 0.15, color="C3", lw=2)
    ax.set_xticks([0, 1], [f"{n}\n(treatment)" if x == 0 else f"{n}\n(control)" for x, n in enumerate(names)])
    ax.set_xlim(-0.4, 1.6)
    ax.set_ylabel(result["metric"]["name"], fontsize=8)
    low, high = result["interval"]
    ax.set_title(f"{result['paper']}: {result['id']}: {result['verdict']}\n"
                 f"effect {result['effect']:+.3g}, 95% CI [{low:+.3g}, {high:+.3g}]", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- the command


def main(paper: str | None, all_: bool, seeds: int | None, output_dir: str | None, fmt: str,
         max_steps: int | None, jobs: int, overwrite: bool) -> int:
    shipped = available()
    if all_ == bool(paper):
        raise PaperrlError("paperrl reproduce: name one PAPER or pass --all, not both; "
                           f"papers with claims: {', '.join(shipped)}")
    if fmt not in ("table", "json"):
        raise PaperrlError(f"--format {fmt}: accepted: table, json")
    for flag, value, least in (("--seeds", seeds, 2), ("--max-steps", max_steps, 1), ("--jobs", jobs, 1)):
        if value is not None and value < least:
            raise PaperrlError(f"{flag} {value}: expected an integer >= {least}")
    files = list(shipped.values()) if all_ else [locate(paper, shipped)]
    claims = {path: load(path) for path in files}  # every claim file checked before anything runs
    out = Path(output_dir or "runs/reproduce")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise PaperrlError(f"--output-dir {out}: not empty; pass --overwrite to replace its runs")
    out.mkdir(parents=True, exist_ok=True)
    report = reproduce([(path.stem, c) for path, cs in claims.items() for c in cs], out, seeds, max_steps, jobs)
    if fmt == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_table(report)
    return 0


def locate(paper: str, shipped: dict[str, Path]) -> Path:
    """A shipped claim file by its recipe's name, or a claim file of your own, named after its recipe."""
    if paper in shipped:
        return shipped[paper]
    path = Path(paper)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise PaperrlError(f"paperrl reproduce: no claim file for '{paper}'{closest(paper, shipped)}; papers with "
                       f"claims: {', '.join(shipped)}, or a path to a claim file named <recipe>.yaml")


def _print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("claim", "treatment vs control", "metric", "seeds", "treatment", "control", "effect", "95% CI",
                  "verdict", box=None)
    for r in report["claims"]:
        (t, tv), (c, cv) = r["values"].items()
        table.add_row(f"{r['paper']}: {r['id']}", f"{t} vs {c}", r["metric"]["name"], str(len(r["seeds"])),
                      f"{statistics.fmean(tv):.4g}", f"{statistics.fmean(cv):.4g}", f"{r['effect']:+.3g}",
                      "[{:+.3g}, {:+.3g}]".format(*r["interval"]), r["verdict"])
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)
    console.print(table)
    console.print(f"written: {Path(report['output_dir']) / 'reproduce.json'} and one figure per claim beside it")
