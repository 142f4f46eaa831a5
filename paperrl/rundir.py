"""A run's directory: checked before anything heavy, written atomically, resumable, with its record."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from paperrl.errors import PaperrlError
from paperrl.resolve import Plan, dry_run
from paperrl.secret import scrub


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def write_json_atomic(path: Path, obj) -> None:
    """Write then rename: an interruption never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(scrub(json.dumps(obj, indent=2, default=str)) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PaperrlError(f"{path}: cannot write ({exc.strerror or exc}); check the disk space and "
                           "permissions") from None


# ---------------------------------------------------------------- output directory


def last_checkpoint(out: Path) -> Path | None:
    checkpoints = [p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
                   and (p / "trainer_state.json").exists()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1])) if checkpoints else None


def check_output_dir(output_dir: str, opts) -> list[str]:
    """Problems with the run directory for these options (--overwrite, --resume)."""
    out = Path(output_dir)
    if opts.overwrite and opts.resume:
        return ["--overwrite and --resume: choose one (--resume continues the run, --overwrite replaces it)"]
    if out.exists() and not out.is_dir():
        return [f"--output-dir {out}: exists and is not a directory"]
    if opts.resume:
        if not out.is_dir() or last_checkpoint(out) is None:
            return [f"--resume: {out} holds no checkpoint to resume from"]
        return []
    if out.is_dir() and any(out.iterdir()) and not opts.overwrite:
        return [f"--output-dir {out}: not empty (a previous run?); pass --resume to continue it, --overwrite to "
                "replace it, or choose another --output-dir"]
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        return [f"--output-dir {out}: not writable (permission denied)"]
    return []


def prepare_output_dir(plan: Plan) -> Path:
    out = Path(plan.config["output_dir"])
    if plan.options.overwrite and out.is_dir():
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PaperrlError(f"--output-dir {out}: cannot create ({exc.strerror})") from None
    return out


def trim_metrics(out: Path, step: int) -> None:
    """On resume: drop the metrics logged after the checkpoint, so no step appears twice."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by kill -9
        if row.get("step", 0) <= step and "train_runtime" not in row:
            kept.append(line)
    tmp = path.with_name(".metrics.jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- run record


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("paperrl", "torch", "transformers", "trl", "accelerate", "datasets", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _hardware() -> dict:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "gpus": gpus}


def run_record(plan: Plan) -> dict:
    resolved = dry_run(plan)
    return {
        **resolved,
        "command": scrub(" ".join(["paperrl", *sys.argv[1:]])),
        "versions": _versions(),
        "seed": resolved["config"].get("seed"),
        "hardware": _hardware(),
        "num_processes": plan.options.num_processes,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---------------------------------------------------------------- building the trainer
