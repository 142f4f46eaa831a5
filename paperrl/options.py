"""The options of `paperrl RECIPE` and `paperrl run FILE`, defined once.

Each field of `Options` carries its command-line flag, metavar and help: the CLI builds its
parameters from these fields (cli._recipe_options) and hands them back as `Options(**kw)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from paperrl.errors import PaperrlError


def flag(name: str, metavar: str | None, help: str, default=None, many: bool = False):
    """A dataclass field that is also a command-line option."""
    meta = {"flag": name, "metavar": metavar, "help": help}
    if many:
        return field(default_factory=list, metadata={**meta, "many": True})
    return field(default=default, metadata=meta)


@dataclass
class Options:
    model: str | None = flag("--model", "ID|DIR", "hub id or local directory; absent: the embedded tiny model")
    dataset: str | None = flag("--dataset", "ID|FILE|DIR", "hub id, or local .jsonl/.json/.parquet/.csv file or "
                               "directory; absent: the paper's (with --model) or the demo task")
    split: str | None = flag("--split", "NAME", "dataset split (hub datasets)")
    subset: str | None = flag("--subset", "NAME", "dataset configuration (hub datasets)")
    columns: list[str] = flag("--column", "NAME=COLUMN", "read NAME (prompt, chosen, solution, ...) from COLUMN "
                              "(repeatable)", many=True)
    output_dir: str | None = flag("--output-dir", "DIR", "run directory; default runs/<recipe>-<time>")
    sets: list[str] = flag("--set", "NAME=VALUE", "a TRL config field or a recipe path such as "
                           "dynamic_sampling.max_rounds (repeatable)", many=True)
    rewards: list[str] = flag("--reward", "MODULE:FUNCTION[=WEIGHT]", "a reward function, also "
                              "path/to/file.py:function or model:ID|DIR (repeatable)", many=True)
    max_steps: int | None = flag("--max-steps", "N", "stop after N optimizer steps")
    num_processes: int = flag("--num-processes", "N", "processes to launch with accelerate (GPUs, or CPU processes)", 1)
    per_device_batch_size: int | None = flag("--per-device-batch-size", "N", "micro-batch per device; accumulation "
                                             "is derived to keep the paper's batch")
    accelerate_config: str | None = flag("--accelerate-config", "NAME|FILE", "TRL's multi_gpu, zero1, zero2, zero3, "
                                         "fsdp1, fsdp2, single_gpu, or your accelerate config")
    num_machines: int | None = flag("--num-machines", "N", "multi-node: passed to accelerate launch")
    machine_rank: int | None = flag("--machine-rank", "RANK", "multi-node: this machine's rank")
    main_process_ip: str | None = flag("--main-process-ip", "HOST", "multi-node: the rank-0 machine")
    main_process_port: int | None = flag("--main-process-port", "PORT", "multi-node: the rank-0 machine's port")
    lora_r: int | None = flag("--lora-r", "RANK", "train a LoRA adapter of this rank (peft)")
    lora_alpha: int | None = flag("--lora-alpha", "ALPHA", "LoRA alpha (default: 2 x rank)")
    dora: bool = flag("--dora", None, "with --lora-r: DoRA, weight-decomposed LoRA (peft's use_dora)", False)
    vllm: str | None = flag("--vllm", "[colocate|server]", "generate with vLLM (pip install 'paperrl[vllm]')")
    report_to: str | None = flag("--report-to", "NAME", "tensorboard, wandb, ... (transformers' report_to)")
    overwrite: bool = flag("--overwrite", None, "replace a non-empty --output-dir", False)
    resume: bool = flag("--resume", None, "continue from the last checkpoint in --output-dir", False)
    dry_run: bool = flag("--dry-run", None, "print every resolved setting with its origin and source; load nothing",
                         False)
    format: str = flag("--format", "[table|json|yaml|python]", "with --dry-run; python: a standalone plain-TRL script",
                       "table")

    def __post_init__(self):
        """Every option in range, all problems at once, before anything else."""
        problems = [f"--{name.replace('_', '-')} {value}: expected an integer >= 1"
                    for name in ("max_steps", "num_processes", "per_device_batch_size", "lora_r", "lora_alpha",
                                 "num_machines", "main_process_port")
                    if (value := getattr(self, name)) is not None and (isinstance(value, bool) or value < 1)]
        if self.machine_rank is not None and self.machine_rank < 0:
            problems.append(f"--machine-rank {self.machine_rank}: expected an integer >= 0")
        if self.vllm not in (None, "colocate", "server"):
            problems.append(f"--vllm {self.vllm}: accepted: colocate, server")
        if self.format not in ("table", "json", "yaml", "python"):
            problems.append(f"--format {self.format}: accepted: table, json, yaml, python")
        if self.dora and self.lora_r is None:
            problems.append("--dora: needs --lora-r RANK (DoRA is a LoRA variant)")
        if problems:
            raise PaperrlError(*problems)

    @property
    def multi_node(self) -> list[str]:
        """The multi-node options, as accelerate launch takes them."""
        out = []
        for name in ("num_machines", "machine_rank", "main_process_ip", "main_process_port"):
            if getattr(self, name) is not None:
                out += [f"--{name}", str(getattr(self, name))]
        return out


def cli_fields():
    """(name, type, default, flag metadata) of every option, in order."""
    return [(f.name, f.type, [] if f.metadata.get("many") else f.default, f.metadata) for f in fields(Options)]
