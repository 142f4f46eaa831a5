"""After a run: the demo task's metric before and after, summary.json, the report figure, the printed summary."""

from __future__ import annotations

import sys
from pathlib import Path

from paperrl import demo
from paperrl.resolve import Plan
from paperrl.rundir import last_checkpoint


def evaluate(plan: Plan, trainer):
    model = trainer.accelerator.unwrap_model(trainer.model)
    return demo.evaluate(model, trainer.processing_class, plan.recipe.trainer)


def evaluate_after(trainer, plan: Plan, bema) -> dict:
    """The trained weights; with BEMA, the BEMA average (what the paper evaluates) and the raw iterate beside it."""
    raw = evaluate(plan, trainer)
    if bema is None or not bema.bema:
        return raw
    model = trainer.accelerator.unwrap_model(trainer.model)
    saved = bema.swap_in(model)
    try:
        averaged = evaluate(plan, trainer)
    finally:
        bema.swap_out(saved)
    return {**averaged, "weights": "BEMA average", "raw_iterate": raw["value"]}


def _headline(rows: list[dict]) -> str | None:
    for key in ("reward", "loss", "train_loss"):
        if any(key in r and r[key] is not None for r in rows):
            return key
    return None


def summary_of(plan, trainer, rows, out, status, elapsed, before, after) -> dict:
    key = _headline(rows)
    values = [r[key] for r in rows if r.get(key) is not None] if key else []
    summary = {
        "recipe": plan.recipe.name,
        "status": status,
        "steps": trainer.state.global_step,
        "runtime_s": round(elapsed, 2),
        "metric": key,
        "start": values[0] if values else None,
        "end": values[-1] if values else None,
        "model_dir": str(out / "model") if status == "completed" else None,
        "checkpoint": str(last_checkpoint(out)) if last_checkpoint(out) else None,
    }
    if before is not None and after is not None:
        summary["eval"] = {
            "metric": before["metric"], "split": before["split"], "n": before["n"],
            "before": before["value"], "after": after["value"], "seeds": 1,
            "note": "one seed: `make results` reports the mean and a 95% interval over seeds",
            **{k: after[k] for k in ("weights", "raw_iterate") if k in after},
        }
    import torch

    if torch.cuda.is_available():
        summary["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return summary


def write_report(out: Path) -> str | None:
    """report.png, drawn in a child process: matplotlib never adds to the run's memory, and a
    plotting problem never fails a finished run."""
    import subprocess

    target = out / "report.png"
    try:
        done = subprocess.run([sys.executable, "-m", "paperrl", "report", str(out), "--out", str(target)],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = subprocess.CompletedProcess([], 1, "", str(exc))
    if done.returncode != 0 or not target.exists():
        print(f"paperrl: report.png not written ({done.stderr.strip()[-300:]})", file=sys.stderr)
        return None
    return str(target)


def print_summary(summary: dict, rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from paperrl.report import sparklines

    table = Table(title=f"paperrl {summary['recipe']}: {summary['status']}", box=None, show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("steps", str(summary["steps"]))
    table.add_row("time", f"{summary['runtime_s']:.1f} s")
    if summary["metric"]:
        table.add_row(summary["metric"], f"{_num(summary['start'])} -> {_num(summary['end'])} (first -> last log)")
    if "eval" in summary:
        e = summary["eval"]
        raw = f", raw iterate {e['raw_iterate']:.3f}" if "raw_iterate" in e else ""
        table.add_row(e["metric"], f"{e['before']:.3f} -> {e['after']:.3f} (before -> after, n = {e['n']}, one "
                                   f"seed{raw})")
    for key, line in sparklines(rows):
        table.add_row(key, line)
    if summary["model_dir"]:
        table.add_row("model", summary["model_dir"])
    if summary.get("report"):
        table.add_row("report", summary["report"])
    if summary["status"] != "completed" and summary["checkpoint"]:
        table.add_row("resume", f"checkpoint {summary['checkpoint']}: rerun with --resume")
    Console(stderr=True, width=None if sys.stderr.isatty() else 200).print(table)


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
