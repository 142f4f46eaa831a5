"""In-process run, or the same command re-executed under `accelerate launch`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from paperrl.errors import PaperrlError, closest
from paperrl.trl_fields import _package_dir

# Set on the workers so that they train instead of launching again.
WORKER_ENV = "PAPERRL_WORKER"
# Options that only the launcher understands; workers get the rest of the command line.
_LAUNCH_FLAGS = {"--num-processes": 1, "--accelerate-config": 1, "--num-machines": 1, "--machine-rank": 1,
                 "--main-process-ip": 1, "--main-process-port": 1}


def named_configs() -> dict[str, Path]:
    """TRL's shipped accelerate configs (multi_gpu, zero2, zero3, fsdp2, ...)."""
    root = _package_dir("trl")
    folder = root / "accelerate_configs" if root else None
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder and folder.is_dir() else {}


def accelerate_config_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or os.sep in name_or_path:
        if not path.is_file():
            raise PaperrlError(f"--accelerate-config {name_or_path}: no such file")
        return path
    configs = named_configs()
    if name_or_path not in configs:
        raise PaperrlError(f"--accelerate-config {name_or_path}: unknown name{closest(name_or_path, configs)}; "
                           f"accepted: {', '.join(configs)} or a path to an accelerate config file")
    return configs[name_or_path]


def in_distributed_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1" or int(os.environ.get("WORLD_SIZE", "1")) > 1


def _strip_launch_flags(argv: list[str]) -> list[str]:
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        key = arg.split("=", 1)[0]
        if key in _LAUNCH_FLAGS:
            skip = 0 if "=" in arg else _LAUNCH_FLAGS[key]
            continue
        out.append(arg)
    return out


def launch_command(opts, argv: list[str]) -> list[str]:
    """The command that runs this recipe: plain paperrl, or accelerate launch over N processes."""
    worker_args = _strip_launch_flags(argv)
    if opts.num_processes <= 1 and not opts.accelerate_config and not opts.multi_node:
        return ["paperrl", *worker_args]
    cmd = ["accelerate", "launch", "--num_processes", str(opts.num_processes)]
    if opts.accelerate_config:
        cmd += ["--config_file", str(accelerate_config_path(opts.accelerate_config))]
    else:
        cmd += ["--multi_gpu"]  # also the working multi-process path on CPU (gloo), see platform notes
    cmd += opts.multi_node
    if "--num_machines" not in opts.multi_node:
        cmd += ["--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no"]  # precision is the TRL config's, set per hardware
    return [*cmd, "-m", "paperrl", *worker_args]


def missing_extras(opts) -> list[str]:
    """Optional extras asked for but not installed: vLLM, DeepSpeed."""
    import importlib.util

    problems = []
    if opts.vllm and importlib.util.find_spec("vllm") is None:
        problems.append(f"--vllm {opts.vllm}: vLLM is not installed; install it with: pip install 'paperrl[vllm]'")
    if opts.accelerate_config:
        text = accelerate_config_path(opts.accelerate_config).read_text(encoding="utf-8", errors="replace")
        if "DEEPSPEED" in text and importlib.util.find_spec("deepspeed") is None:
            problems.append(f"--accelerate-config {opts.accelerate_config}: DeepSpeed is not installed; install it "
                            "with: pip install 'paperrl[deepspeed]'")
    return problems


def relaunch(opts, argv: list[str], plan_json: str) -> int:
    """Re-execute under accelerate launch; the workers read the plan resolved here (JSON, in their environment)."""
    cmd = launch_command(opts, argv)
    cmd[0:2] = [sys.executable, "-m", "accelerate.commands.launch"]
    env = {**os.environ, WORKER_ENV: "1", "PAPERRL_PLAN": plan_json}
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
