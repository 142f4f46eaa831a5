"""A training run: check everything cheap first, then train with the real TRL trainer.

Order matters: the recipe, options, output directory, dataset columns and reward functions are
all checked before a model is loaded, so a mistake costs seconds, not GPU hours.
"""

import os
import sys
import time
import warnings
from pathlib import Path

from paperrl import demo, launch
from paperrl.builder import build_trainer, load_inputs
from paperrl.errors import PaperrlError
from paperrl.resolve import Plan
from paperrl.rundir import last_checkpoint, prepare_output_dir, rank, run_record, trim_metrics, write_json_atomic
from paperrl.summary import evaluate, evaluate_after, print_summary, summary_of, write_report




def run(plan: Plan) -> int:
    """Train; returns the process exit code."""
    if plan.options.num_processes > 1 and not launch.in_distributed_worker():
        return _launch_workers(plan)
    return _train(plan)


def _launch_workers(plan: Plan) -> int:
    dataset, _ = load_inputs(plan)  # fail here, once, before starting N processes
    del dataset
    out = prepare_output_dir(plan)
    write_json_atomic(out / "paperrl.json", run_record(plan))
    return launch.relaunch(plan.options, sys.argv[1:], plan.to_json())


def _train(plan: Plan) -> int:
    from transformers.utils import logging as hf_logging

    from paperrl.callbacks import GracefulStop, MetricsFile
    from paperrl.rewards import RewardFailed

    hf_logging.disable_progress_bar()  # weight loading/saving bars; training keeps its own
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)

    main = rank() == 0
    dataset, funcs = load_inputs(plan)
    if plan.demo_mode:
        demo.one_thread()
        demo.ensure_model()
    out = Path(plan.config["output_dir"])
    checkpoint = None
    if main and not os.environ.get("PAPERRL_PLAN"):
        out = prepare_output_dir(plan)
        if plan.options.resume:
            checkpoint = last_checkpoint(out)
            trim_metrics(out, int(checkpoint.name.split("-")[-1]))
        else:
            write_json_atomic(out / "paperrl.json", run_record(plan))
    elif plan.options.resume:
        checkpoint = last_checkpoint(out)
    metrics = MetricsFile(out / "metrics.jsonl")
    stop = GracefulStop()
    trainer = build_trainer(plan, dataset, funcs, extra_callbacks=[metrics, stop])
    bema = next((c for c in trainer.callback_handler.callbacks if type(c).__name__ == "BEMA"), None)
    if bema is not None and checkpoint is not None:
        bema.restore(str(checkpoint))

    before = evaluate(plan, trainer) if plan.demo_mode and checkpoint is None else None
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
    after = evaluate_after(trainer, plan, bema) if plan.demo_mode and status == "completed" else None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        print(f"paperrl: process {rank()}/{world} trained {trainer.state.global_step} steps", file=sys.stderr)
    if main:
        metrics.close()
        summary = summary_of(plan, trainer, metrics.rows, out, status, elapsed, before, after)
        summary["report"] = write_report(out)
        write_json_atomic(out / "summary.json", summary)
        print_summary(summary, metrics.rows)
    if status == "interrupted":
        return 128 + stop.signal
    if status == "stopped":
        print(f"paperrl: {stop.reason}", file=sys.stderr)
        return 1
    return 130 if status == "aborted" else 0
