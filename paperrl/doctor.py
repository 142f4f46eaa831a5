"""`paperrl doctor [RECIPE]`: what a run would use on this machine, before anything is loaded.

Versions come from package metadata, devices from torch (imported, never given a model),
the batch split and the launch command from the same code as a dry run; TRL and transformers
are not imported. The machine's facts are one `Machine` value, so that every GPU branch can be
shown (and tested) on a CPU with faked facts.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from paperrl import __version__, catalog
from paperrl.errors import PaperrlError

GiB = 2**30
_VERSIONED = (("TRL", "trl"), ("transformers", "transformers"), ("torch", "torch"), ("accelerate", "accelerate"))
# Optional packages: module, distribution, what needs it, how to install it.
_EXTRAS = (
    ("peft", "peft", "--lora-r", "pip install peft"),
    ("vllm", "vllm", "--vllm colocate|server", "pip install 'paperrl[vllm]'"),
    ("deepspeed", "deepspeed", "--accelerate-config zero1|zero2|zero3", "pip install 'paperrl[deepspeed]'"),
    ("flash_attn", "flash-attn", "flash-attention kernels (GPU)", "pip install flash-attn --no-build-isolation"),
    ("wandb", "wandb", "--report-to wandb", "pip install wandb"),
)
_ASSUMED_PROMPT_TOKENS = 512  # for the generation estimate where the recipe caps no prompt length


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> str:
    """One line: paperrl and the libraries a run depends on, read from metadata (nothing imported)."""
    libs = ", ".join(f"{label} {_version(dist) or 'not installed'}" for label, dist in _VERSIONED)
    return f"paperrl {__version__} ({libs}; Python {platform.python_version()})"


@dataclass
class Gpu:
    name: str
    memory_gib: float


@dataclass
class Machine:
    gpus: list[Gpu] = field(default_factory=list)
    bf16: bool = False  # the GPUs support bf16 (Ampere or newer)
    cpus: int = 1
    memory_gib: float | None = None  # RAM


def probe() -> Machine:
    """This machine's facts, through torch (CUDA is queried, not used)."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(Gpu(props.name, props.total_memory / GiB))
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    except (ValueError, OSError, AttributeError):
        ram = None
    return Machine(gpus=gpus, bf16=bool(gpus) and torch.cuda.is_bf16_supported(), cpus=os.cpu_count() or 1,
                   memory_gib=ram)


def _precision(machine: Machine) -> str:
    from paperrl.resolve import precision

    flags = precision(bool(machine.gpus), machine.bf16)
    if flags["bf16"]:
        return "bf16 (the GPUs support it)"
    if flags["fp16"]:
        return "fp16 (these GPUs have no bf16)"
    return "fp32 on the CPU (TRL's bf16 default would be refused without a GPU)"


def _devices(machine: Machine) -> str:
    ram = f", {machine.memory_gib:.0f} GiB RAM" if machine.memory_gib else ""
    cpu = f"{machine.cpus} CPU cores{ram}"
    if not machine.gpus:
        return f"no CUDA GPU; {cpu}"
    kinds = {}
    for gpu in machine.gpus:
        kinds.setdefault(f"{gpu.name} ({gpu.memory_gib:.0f} GiB)", []).append(gpu)
    return ", ".join(f"{len(v)} x {k}" for k, v in kinds.items()) + f"; {cpu}"


def _extras() -> str:
    rows = []
    for module, dist, purpose, install in _EXTRAS:
        if importlib.util.find_spec(module) is not None:
            rows.append(f"{dist} {_version(dist) or ''}".strip())
        else:
            rows.append(f"{dist} missing ({purpose}): {install}")
    return "; ".join(rows)


def _accelerate(num_processes: int) -> str:
    """What `--num-processes N` picks: accelerate's --multi_gpu (DDP), plus its default config file if there is one."""
    if num_processes <= 1:
        return "not used: 1 process runs in place (--num-processes N launches N with accelerate)"
    from accelerate.commands.config.config_args import default_config_file

    found = Path(default_config_file)
    default = f"accelerate fills what paperrl does not pass from {found}" if found.is_file() else \
        f"no default config ({found})"
    return f"--multi_gpu: DDP over {num_processes} processes (--accelerate-config zero3|fsdp2|FILE to shard); {default}"


# ---------------------------------------------------------------- a recipe on this machine


def model_config(model: str | None) -> tuple[dict | None, str]:
    """The model's config.json, from a local directory or the hub cache (nothing is downloaded)."""
    if model is None:
        from paperrl import demo

        path, where = demo.model_dir() / "config.json", "the embedded tiny model"
    elif Path(model).is_dir():
        path, where = Path(model) / "config.json", model
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
        except Exception:  # noqa: BLE001 - an unusual id: no estimate, not an error
            cached = None
        path, where = Path(cached) if isinstance(cached, str) else None, model
    if path is None or not path.is_file():
        return None, f"{where}: no config.json here or in the hub cache"
    try:
        return json.loads(path.read_text(encoding="utf-8")), where
    except (OSError, ValueError) as exc:
        return None, f"{path}: unreadable ({exc.__class__.__name__})"


def parameters(config: dict) -> int | None:
    """A dense decoder's parameter count from its config: embeddings, attention, gated MLP."""
    config = config.get("text_config", config)
    h, layers, vocab = config.get("hidden_size"), config.get("num_hidden_layers"), config.get("vocab_size")
    if not (h and layers and vocab):
        return None
    heads = config.get("num_attention_heads") or 1
    kv = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or h // heads
    experts = config.get("num_experts") or config.get("num_local_experts") or 1
    intermediate = (config.get("moe_intermediate_size") if experts > 1 else None) or config.get("intermediate_size") or 4 * h
    attention = h * head_dim * (2 * heads + 2 * kv)
    mlp = 3 * h * intermediate * experts
    embeddings = vocab * h * (1 if config.get("tie_word_embeddings") else 2)
    return layers * (attention + mlp) + embeddings


def _params_from_name(model: str) -> int | None:
    match = re.search(r"(\d+(?:\.\d+)?)\s*([bBmM])\b", model)
    if not match:
        return None
    return int(float(match.group(1)) * (1e9 if match.group(2) in "bB" else 1e6))


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"


def memory_estimate(plan, config: dict | None, params: int, machine: Machine) -> str:
    """Per process, without ZeRO/FSDP sharding: weights, gradients, AdamW, reference model, generation."""
    dtype = str((config or {}).get("torch_dtype") or (config or {}).get("dtype") or "")
    width = 2 if dtype in ("bfloat16", "float16") or (machine.gpus and not dtype) else 4
    fields = plan.recipe.trl_fields()

    def value(name):
        return plan.config.get(name, fields.get(name, (None,))[0])

    parts = {"weights": params * width, "gradients": params * width, "AdamW states": 2 * params * width}
    reference = plan.kind.reference
    if reference == "always" or (reference == "beta" and value("beta")):
        parts["reference model"] = params * width
    text = config.get("text_config", config) if config else None
    if plan.kind.online and text and text.get("num_hidden_layers"):
        heads = text.get("num_attention_heads") or 1
        per_token = 2 * text["num_hidden_layers"] * (text.get("num_key_value_heads") or heads) * \
            (text.get("head_dim") or text["hidden_size"] // heads) * width
        prompt = (plan.recipe.dataset.max_prompt_tokens if plan.recipe.dataset else None) or _ASSUMED_PROMPT_TOKENS
        completion = value("max_completion_length")
        sequences = value("per_device_train_batch_size") * (value("steps_per_generation") or value("gradient_accumulation_steps"))
        parts[f"KV cache of one generation batch ({sequences} x {prompt}+{completion} tokens)"] = \
            per_token * sequences * (prompt + completion)
    total = sum(parts.values())
    text_parts = ", ".join(f"{k} {_gib(v)}" for k, v in parts.items())
    fit = ""
    if machine.gpus:
        smallest = min(g.memory_gib for g in machine.gpus) * GiB
        fit = " (fits one GPU)" if total <= smallest else \
            f" (over one GPU's {smallest / GiB:.0f} GiB: shard with --accelerate-config zero3|fsdp2, --lora-r, or --vllm)"
    return f"~{_gib(total)}{fit}: {text_parts}"


def _batch(plan) -> str:
    c, b = plan.config, plan.paper_batch
    paper = ", ".join(f"{k} {v}" for k, v in b.items()) or "not stated"
    trl = ", ".join(f"{k} {c[k]}" for k in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                             "steps_per_generation", "num_generations") if k in c)
    return f"paper: {paper}; TRL on {plan.options.num_processes} process(es): {trl or 'TRL defaults'}"


def recipe_rows(recipe_ref: str, model: str | None, num_processes: int, machine: Machine) -> list[tuple[str, str]]:
    from paperrl import recipe as recipes
    from paperrl.launch import launch_command
    from paperrl.resolve import Options, resolve

    r = recipes.load(recipe_ref)
    opts = Options(model=model, num_processes=num_processes)
    rows = [("recipe", f"{r.name}: {r.title} ({catalog.cite(r.model_dump())}), trainer {r.trainer}, "
                       f"{'with the paper values' if model else 'with the demo values on the embedded tiny model'}")]
    try:
        plan = resolve(r, opts)
    except PaperrlError as exc:
        return rows + [("batch", " ".join(exc.problems))]
    rows.append(("batch", _batch(plan)))
    config, where = model_config(model)
    params = parameters(config) if config else (_params_from_name(model) if model else None)
    if params:
        how = "from config.json" if config else f"from the name '{model}' ({where})"
        rows.append(("memory", f"{_count(params)} parameters {how}; " + memory_estimate(plan, config, params, machine)))
    else:
        rows.append(("memory", f"no estimate: {where}"))
    rows.append(("launch", " ".join(launch_command(opts, [r.name] + (["--model", model] if model else [])))))
    return rows


def report(recipe: str | None = None, model: str | None = None, num_processes: int | None = None,
           machine: Machine | None = None) -> list[tuple[str, str]]:
    """The doctor's rows: (label, text)."""
    machine = machine or probe()
    n = max(1, len(machine.gpus)) if num_processes is None else num_processes
    if n < 1:
        raise PaperrlError(f"--num-processes {n}: expected an integer >= 1")
    rows = [
        ("versions", versions()),
        ("devices", _devices(machine)),
        ("precision", _precision(machine)),
        ("extras", _extras()),
        ("processes", f"{n}" + ("" if num_processes else " (default: one per GPU, 1 without; --num-processes N)")),
        ("accelerate", _accelerate(n)),
    ]
    if recipe:
        rows += recipe_rows(recipe, model, n, machine)
    return rows
