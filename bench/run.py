"""`make bench`: paperrl against its floors, side by side in one run; writes bench/RESULTS.md.

1. start-up of the fast commands against `python -c pass` and `trl --help`;
2. a dry run against a bare `import trl; GRPOConfig(...)`;
3. training step time and peak memory of paperrl against the exported plain-TRL script of the same
   recipe (per-step time = difference of two run lengths, so start-up and warm-up cancel out);
4. loading and checking a 1,000,000-row local JSONL dataset;
5. DAPO dynamic sampling: generation cost against the fraction of informative groups, and time per
   optimizer step with and without it.
The machine is noisy: runs alternate between the compared commands and medians are reported.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAPERRL = [str(BIN / "paperrl")]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
QUICK = os.environ.get("BENCH_QUICK") == "1"


def run(cmd, cwd=None) -> tuple[float, int]:
    """(wall seconds, peak RSS in MB) of one command."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, cmd)], cwd=cwd or ROOT, env=ENV,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-2000:]}")
    return wall, int(proc.stderr.strip().splitlines()[-1]) // 1024


def medians(cmds: dict, reps: int) -> dict:
    """Alternate the commands `reps` times; median wall time and peak memory of each."""
    samples = {k: [] for k in cmds}
    for _ in range(reps):
        for name, cmd in cmds.items():
            samples[name].append(run(cmd))
    return {k: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v)) for k, v in samples.items()}


def startup(lines, tmp):  # noqa: ARG001
    reps = 3 if QUICK else 7
    res = medians({
        "python -c pass": [sys.executable, "-c", "pass"],
        "trl --help": [BIN / "trl", "--help"],
        "paperrl --help": [*PAPERRL, "--help"],
        "paperrl list": [*PAPERRL, "list"],
        "paperrl show gspo": [*PAPERRL, "show", "gspo"],
    }, reps)
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import paperrl.cli"], env=ENV,
                             capture_output=True, text=True).stderr.splitlines()
    total = sum(int(l.split("|")[1]) for l in imports if l.startswith("import time:") and l.split("|")[1].strip().isdigit())
    lines += ["## 1. Start-up (goal: under 0.3 s, no torch/transformers/trl import)", "",
              f"Median of {reps} alternating runs.", "", "| command | wall (s) | vs python -c pass |", "|---|---|---|"]
    base = res["python -c pass"][0]
    for name, (wall, _) in res.items():
        lines.append(f"| `{name}` | {wall:.3f} | +{wall - base:.3f} s |")
    lines += ["", f"`python -X importtime -c 'import paperrl.cli'`: {total / 1e6:.3f} s of imports in total "
              "(typer, rich, pydantic, yaml; tests/test_fast_paths.py asserts that torch, transformers and trl "
              "are not imported).", ""]


def dry_run(lines, tmp):
    reps = 3
    floor = ("import trl\nfrom trl import GRPOConfig\n"
             "GRPOConfig(output_dir='/tmp/x', bf16=False, use_cpu=True, importance_sampling_level='sequence', "
             "loss_type='grpo', epsilon=3e-4, epsilon_high=4e-4, beta=0.0, steps_per_generation=4)")
    res = medians({"bare TRL: import trl; GRPOConfig(...)": [sys.executable, "-c", floor],
                   "paperrl gspo --dry-run --format json": [*PAPERRL, "gspo", "--dry-run", "--format", "json"]}, reps)
    (floor_t, _), (ours, _) = res.values()
    lines += ["## 2. Dry run (goal: within 10% of the bare TRL floor)", "", "| command | wall (s) |", "|---|---|"]
    lines += [f"| `{k}` | {v[0]:.3f} |" for k, v in res.items()]
    lines += ["", f"Ratio paperrl / floor: **{ours / floor_t:.3f}**.", ""]


def _train_runtime(cmd, out: Path, is_script: bool) -> tuple[float, int]:
    """(seconds inside trainer.train(), peak RSS MB) of one run: TRL's own `train_runtime` for both."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, cmd)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-2000:]}")
    peak = int(proc.stderr.strip().splitlines()[-1]) // 1024
    if is_script:  # the plain script prints TRL's log dicts
        found = re.findall(r"'train_runtime': '([0-9.]+)'", proc.stdout + proc.stderr)
        return float(found[-1]), peak
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return next(r["train_runtime"] for r in reversed(rows) if "train_runtime" in r), peak


def training(lines, tmp: Path):
    reps = 1 if QUICK else 2
    recipes = {"gspo": ([], 20, 120), "dapo": (["--set", "dynamic_sampling.enabled=false"], 20, 120),
               "dpo": ([], 20, 200), "bema": ([], 20, 200)}
    lines += ["## 3. Training on the embedded default: paperrl against the exported plain-TRL script "
              "(goal: within 2%)", "",
              "Per-step time = (train_runtime(long) - train_runtime(short)) / (long - short), TRL's own "
              "`train_runtime` of `trainer.train()` in both: start-up, model loading and the first steps cancel "
              f"out. Fastest of {reps} alternating repetitions (the machine is shared and noisy; the minimum is the least disturbed run); peak memory is the process's max RSS at the long "
              "run (paperrl draws report.png in a child process).", "",
              "| recipe | steps | paperrl s/step | plain TRL s/step | ratio | paperrl peak MB | plain TRL peak MB | ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for name, (extra, short, long) in recipes.items():
        if QUICK:
            short, long = 10, 60
        samples = {k: [] for k in ("paperrl", "trl")}
        for _ in range(reps):
            runs = {}
            for steps in (short, long):
                out = tmp / f"{name}-{steps}"
                script = tmp / f"{name}-{steps}.py"
                export = subprocess.run([*PAPERRL, name, *extra, "--max-steps", str(steps), "--output-dir",
                                         str(out / "trl"), "--dry-run", "--format", "python"], env=ENV,
                                        capture_output=True, text=True)
                script.write_text(export.stdout)
                subprocess.run(["rm", "-rf", str(out)])
                runs[("paperrl", steps)] = _train_runtime([*PAPERRL, name, *extra, "--max-steps", steps, "--output-dir",
                                                           out / "paperrl"], out / "paperrl", False)
                runs[("trl", steps)] = _train_runtime([sys.executable, script], out / "trl", True)
            for who in samples:
                per_step = (runs[(who, long)][0] - runs[(who, short)][0]) / (long - short)
                samples[who].append((per_step, runs[(who, long)][1]))
        ours, theirs = (min(s for s, _ in samples[k]) for k in ("paperrl", "trl"))  # least-disturbed run
        mem_ours, mem_theirs = (statistics.median(m for _, m in samples[k]) for k in ("paperrl", "trl"))
        lines.append(f"| {name} | {short} / {long} | {ours:.4f} | {theirs:.4f} | {ours / theirs:.3f} | {mem_ours:.0f} | "
                     f"{mem_theirs:.0f} | {mem_ours / mem_theirs:.3f} |")
    lines.append("")


def data(lines, tmp: Path):
    rows = 200_000 if QUICK else 1_000_000
    path = tmp / "big.jsonl"
    with path.open("w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"question": f"{i % 97}+{i % 89}=", "answer": str(i % 97 + i % 89)}) + "\n")
    code = (
        "import resource, time, json\n"
        "t = time.perf_counter()\n"
        "from paperrl import recipe, data\nfrom paperrl.resolve import Options, resolve\n"
        "from paperrl.rewards import build\n"
        f"plan = resolve(recipe.load('gspo'), Options(model='m', dataset={str(path)!r}, "
        "columns=['prompt=question', 'solution=answer'], output_dir='/tmp/x'))\n"
        "imported = time.perf_counter()\n"
        "funcs, needs = build(plan.rewards)\n"
        "ds = data.load(plan)\n"
        "problems = data.check_columns(ds, plan.kind, needs, plan.dataset)\n"
        "assert not problems, problems\n"
        "print(json.dumps({'rows': len(ds), 'load_check_s': time.perf_counter() - imported, "
        "'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))\n"
    )
    size = path.stat().st_size / 1e6
    cold = json.loads(subprocess.run([sys.executable, "-c", code], env={**ENV, "HF_DATASETS_CACHE": str(tmp / "hf")},
                                     capture_output=True, text=True, cwd=ROOT).stdout)
    warm = json.loads(subprocess.run([sys.executable, "-c", code], env={**ENV, "HF_DATASETS_CACHE": str(tmp / "hf")},
                                     capture_output=True, text=True, cwd=ROOT).stdout)
    lines += [f"## 4. A {rows:,}-row local JSONL dataset ({size:.0f} MB): load, map columns, check (goal: seconds)", "",
              "Through `datasets` (Arrow, memory-mapped): the rows never become Python lists.", "",
              "| | seconds | peak RSS of the process (MB) |", "|---|---|---|",
              f"| first load (JSON -> Arrow cache) | {cold['load_check_s']:.1f} | {cold['rss_mb']} |",
              f"| second load (Arrow cache) | {warm['load_check_s']:.1f} | {warm['rss_mb']} |", ""]


def dynamic_sampling(lines, tmp: Path):
    steps = 16 if QUICK else 40
    reward = Path("bench") / "informative_reward.py"  # relative to ROOT, where the commands run
    base = ["gspo", "--max-steps", str(steps), "--reward", f"{reward}:fractional", "--set",
            "dynamic_sampling.metric=fractional"]
    lines += ["## 5. DAPO dynamic sampling: cost against the fraction of informative groups", "",
              f"`paperrl {' '.join(base)} --set dynamic_sampling.enabled=true|false` on the embedded default, with a "
              "reward that makes a chosen fraction of prompts informative (the others score the same for every "
              "completion). Generated per trained = groups generated / groups trained.", "",
              "| informative fraction | dynamic sampling | s / optimizer step | groups generated per group trained | "
              "rounds per rollout (mean) |", "|---|---|---|---|---|"]
    for fraction in (0.25, 0.5, 0.9):
        for enabled in ("false", "true"):
            out = tmp / f"ds-{fraction}-{enabled}"
            env = {**ENV, "INFORMATIVE_FRACTION": str(fraction)}
            cmd = [*PAPERRL, *base, "--set", f"dynamic_sampling.enabled={enabled}", "--output-dir", out, "--overwrite"]
            subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True, cwd=ROOT, check=True)
            rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
            summary = json.loads((out / "summary.json").read_text())
            per_step = summary["runtime_s"] / max(1, summary["steps"])
            ds = [r for r in rows if "dynamic_sampling/groups_generated" in r]
            ratio = (sum(r["dynamic_sampling/groups_generated"] for r in ds) /
                     sum(r["dynamic_sampling/groups_kept"] for r in ds)) if ds else 1.0
            rounds = statistics.mean(r["dynamic_sampling/rounds"] for r in ds) if ds else 1.0
            lines.append(f"| {fraction} | {enabled} | {per_step:.3f} | {ratio:.2f} | {rounds:.2f} |")
    lines.append("")


def main():
    started = time.time()
    lines = ["# Benchmarks", "",
             f"Command: `make bench` (`{' '.join([Path(sys.executable).name, 'bench/run.py'])}`"
             f"{', BENCH_QUICK=1' if QUICK else ''}). Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
             f"Python {platform.python_version()}, no GPU. Date: {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([*PAPERRL, "gspo", "--dry-run"], env=ENV, capture_output=True)  # build nothing, warm caches
        subprocess.run([sys.executable, "-c", "from paperrl import demo; demo.ensure_model()"], env=ENV, cwd=ROOT)
        for section in (startup, dry_run, training, data, dynamic_sampling):
            t = time.time()
            section(lines, tmp)
            print(f"{section.__name__}: {time.time() - t:.0f} s", flush=True)
    lines.append(f"Total bench time: {time.time() - started:.0f} s.")
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
