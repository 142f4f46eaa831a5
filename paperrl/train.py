"""A training run: check everything cheap first, then train with the real TRL trainer.

Order matters: the recipe, options, output directory, dataset columns and reward functions are
all checked before a model is loaded, so a mistake costs seconds, not GPU hours.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path

from paperrl import data as datamod
from paperrl import demo, launch
from paperrl.errors import PaperrlError
from paperrl.resolve import Plan, build_config, dry_run
from paperrl.secret import scrub


def _rank() -> int:
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


def _last_checkpoint(out: Path) -> Path | None:
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
        if not out.is_dir() or _last_checkpoint(out) is None:
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


def _prepare_output_dir(plan: Plan) -> Path:
    out = Path(plan.config["output_dir"])
    if plan.options.overwrite and out.is_dir():
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PaperrlError(f"--output-dir {out}: cannot create ({exc.strerror})") from None
    return out


def _trim_metrics(out: Path, step: int) -> None:
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


def _load_inputs(plan: Plan):
    """Dataset and rewards, checked together before any model is loaded."""
    from paperrl import rewards as rewardmod

    problems = check_output_dir(plan.config["output_dir"], plan.options) \
        if not os.environ.get("PAPERRL_PLAN") and _rank() == 0 else []
    problems += launch.missing_extras(plan.options)
    funcs, needs = [], {}
    if plan.kind.online and not plan.rewards:
        problems.append(f"{plan.recipe.name}: this recipe has no reward function for your data (the paper trains "
                        "a reward model); pass --reward module:function, --reward path/to/file.py:function or "
                        "--reward model:<reward model id or directory>")
    if plan.kind.online:
        try:
            funcs, needs = rewardmod.build(plan.rewards)
        except PaperrlError as exc:
            problems += exc.problems
    try:
        dataset = datamod.load(plan)
        problems += datamod.check_columns(dataset, plan.kind, needs, plan.dataset)
    except PaperrlError as exc:
        problems += exc.problems
        dataset = None
    if problems:
        raise PaperrlError(*problems)
    return dataset, funcs


def _peft_config(plan: Plan):
    if plan.options.lora_r is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=plan.options.lora_r, lora_alpha=plan.options.lora_alpha or 2 * plan.options.lora_r,
                      use_dora=plan.options.dora, target_modules="all-linear", task_type="CAUSAL_LM")


def _callbacks(plan: Plan):
    """The recipe's callbacks (names and arguments were checked against their classes when it was read)."""
    import importlib

    from paperrl.recipe import CALLBACKS

    out = []
    for spec in plan.callbacks:
        module, name = CALLBACKS[spec["name"]].split(":")
        out.append(getattr(importlib.import_module(module), name)(**spec["args"]))
    return out


def build_trainer(plan: Plan, dataset, reward_funcs, extra_callbacks=()):
    from transformers import AutoTokenizer

    config = build_config(plan)
    tokenizer = AutoTokenizer.from_pretrained(plan.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = datamod.prepare(dataset, plan, tokenizer)
    kwargs = dict(model=plan.model, args=config, train_dataset=dataset, processing_class=tokenizer,
                  callbacks=[*_callbacks(plan), *extra_callbacks], peft_config=_peft_config(plan))
    if kwargs["peft_config"] is None:
        del kwargs["peft_config"]
    if plan.kind.online:
        kwargs["reward_funcs"] = reward_funcs
    if plan.kind.trainer_arguments:  # what this kind's trainer needs beyond the common ones (a teacher, ...)
        kwargs.update(plan.kind.load("trainer_arguments")(plan, tokenizer))
    cls = plan.kind.load("trainer_class")
    if plan.dynamic_sampling:
        from paperrl.sampling import with_dynamic_sampling

        cls = with_dynamic_sampling(cls, plan.dynamic_sampling)
    if plan.recipe.exact_token_normaliser and plan.recipe.exact_token_normaliser.value:
        from paperrl.normaliser import with_exact_token_normaliser

        cls = with_exact_token_normaliser(cls)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental.*")
        trainer = cls(**kwargs)
    _quiet_progress(trainer)
    return trainer


def _quiet_progress(trainer) -> None:
    """Keep TRL's progress bar but not its dump of every log dict (metrics.jsonl has them)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class Progress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.pop_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(Progress())


# ---------------------------------------------------------------- the run


def run(plan: Plan) -> int:
    """Train; returns the process exit code."""
    if plan.options.num_processes > 1 and not launch.in_distributed_worker():
        return _launch_workers(plan)
    return _train(plan)


def _launch_workers(plan: Plan) -> int:
    dataset, _ = _load_inputs(plan)  # fail here, once, before starting N processes
    del dataset
    out = _prepare_output_dir(plan)
    write_json_atomic(out / "paperrl.json", run_record(plan))
    return launch.relaunch(plan.options, sys.argv[1:], plan.to_json())


def _train(plan: Plan) -> int:
    from transformers.utils import logging as hf_logging

    from paperrl.callbacks import GracefulStop, MetricsFile
    from paperrl.rewards import RewardFailed

    hf_logging.disable_progress_bar()  # weight loading/saving bars; training keeps its own
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)

    main = _rank() == 0
    dataset, funcs = _load_inputs(plan)
    if plan.demo_mode:
        demo.one_thread()
        demo.ensure_model()
    out = Path(plan.config["output_dir"])
    checkpoint = None
    if main and not os.environ.get("PAPERRL_PLAN"):
        out = _prepare_output_dir(plan)
        if plan.options.resume:
            checkpoint = _last_checkpoint(out)
            _trim_metrics(out, int(checkpoint.name.split("-")[-1]))
        else:
            write_json_atomic(out / "paperrl.json", run_record(plan))
    elif plan.options.resume:
        checkpoint = _last_checkpoint(out)
    metrics = MetricsFile(out / "metrics.jsonl")
    stop = GracefulStop()
    trainer = build_trainer(plan, dataset, funcs, extra_callbacks=[metrics, stop])
    bema = next((c for c in trainer.callback_handler.callbacks if type(c).__name__ == "BEMA"), None)
    if bema is not None and checkpoint is not None:
        bema.restore(str(checkpoint))

    before = _evaluate(plan, trainer) if plan.demo_mode and checkpoint is None else None
    started = time.time()
    stop.install()
    status = "completed"
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except RewardFailed as exc:
        stop.uninstall()
        raise PaperrlError(f"{exc} - training stopped at step {trainer.state.global_step}; the last checkpoint "
                           f"in {out} is intact") from None
    except KeyboardInterrupt:
        status = "aborted"
    finally:
        stop.uninstall()
    if stop.signal is not None and status == "completed":
        status = "interrupted"
    elif stop.reason is not None and status == "completed":
        status = "stopped"
    elapsed = time.time() - started

    if status == "completed":
        trainer.save_model(str(out / "model"))
    after = _evaluate_after(trainer, plan, bema) if plan.demo_mode and status == "completed" else None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        print(f"paperrl: process {_rank()}/{world} trained {trainer.state.global_step} steps", file=sys.stderr)
    if main:
        metrics.close()
        summary = _summary(plan, trainer, metrics.rows, out, status, elapsed, before, after)
        summary["report"] = _write_report(out)
        write_json_atomic(out / "summary.json", summary)
        _print_summary(summary, metrics.rows)
    if status == "interrupted":
        return 128 + stop.signal
    if status == "stopped":
        print(f"paperrl: {stop.reason}", file=sys.stderr)
        return 1
    return 130 if status == "aborted" else 0


def _evaluate(plan: Plan, trainer):
    model = trainer.accelerator.unwrap_model(trainer.model)
    return demo.evaluate(model, trainer.processing_class, plan.recipe.trainer)


def _evaluate_after(trainer, plan: Plan, bema) -> dict:
    """The trained weights; with BEMA, the BEMA average (what the paper evaluates) and the raw iterate beside it."""
    raw = _evaluate(plan, trainer)
    if bema is None or not bema.bema:
        return raw
    model = trainer.accelerator.unwrap_model(trainer.model)
    saved = bema.swap_in(model)
    try:
        averaged = _evaluate(plan, trainer)
    finally:
        bema.swap_out(saved)
    return {**averaged, "weights": "BEMA average", "raw_iterate": raw["value"]}


def _headline(rows: list[dict]) -> str | None:
    for key in ("reward", "loss", "train_loss"):
        if any(key in r and r[key] is not None for r in rows):
            return key
    return None


def _summary(plan, trainer, rows, out, status, elapsed, before, after) -> dict:
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
        "checkpoint": str(_last_checkpoint(out)) if _last_checkpoint(out) else None,
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


def _write_report(out: Path) -> str | None:
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


def _print_summary(summary: dict, rows: list[dict]) -> None:
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
