"""Recipe + options + hardware -> the resolved run: TRL config values with origin and source."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from paperrl import batch as batchmod
from paperrl import catalog
from paperrl import demo, secret
from paperrl.errors import PaperrlError, closest
from paperrl.launch import launch_command
from paperrl.options import Options
from paperrl.recipe import Named, Recipe, reward_name


@dataclass
class Plan:
    recipe: Recipe
    options: Options
    demo_mode: bool
    model: str
    dataset: str | None
    config: dict
    origin: dict
    sources: dict
    rewards: list[dict]
    callbacks: list[dict]
    dynamic_sampling: dict | None
    paper_batch: dict
    launch: dict

    @property
    def kind(self):
        return self.recipe.kind

    def to_json(self) -> str:
        """The plan for worker processes: plain JSON (never a pickle), no secret in it."""
        plan = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        plan["recipe"] = {"fields": self.recipe.model_dump(mode="json", exclude_unset=True),
                          "user_set": sorted(self.recipe.user_set), "file": self.recipe.file}
        plan["options"] = dataclasses.asdict(self.options)
        return json.dumps(plan)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        plan = json.loads(text)
        recipe = Recipe.model_validate(plan["recipe"]["fields"])
        recipe.user_set, recipe.file = set(plan["recipe"]["user_set"]), plan["recipe"]["file"]
        return cls(**{**plan, "recipe": recipe, "options": Options(**plan["options"])})


def precision(cuda: bool, bf16: bool) -> dict:
    """TRL's precision flags: bf16 where the GPU supports it, else fp16; fp32 on a CPU."""
    if cuda:
        return {"bf16": bf16, "fp16": not bf16}
    return {"bf16": False, "fp16": False, "use_cpu": True}


def _hardware_precision() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return precision(cuda, cuda and torch.cuda.is_bf16_supported())


def _substitute(value, config: dict, defaults: dict):
    """'${max_completion_length}' in a reward or callback argument -> the resolved config value."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{(\w+)\}", value.strip())
        if match:
            name = match.group(1)
            return config.get(name, defaults.get(name, (None,))[0])
    return value


def _named(items: list[Named], demo_mode: bool, config: dict, defaults: dict):
    """Reward functions or callbacks with their arguments for this mode, `${field}` resolved."""
    out = []
    for item in items:
        args = {}
        for key, entry in item.args.items():
            value, _ = entry.pick(demo_mode)
            args[key] = _substitute(value, config, defaults)
        out.append({"name": item.name, "args": args, "weight": item.weight})
    return out


def gaps(recipe: Recipe) -> list[str]:
    """Fields that matter for a run which the recipe leaves to TRL's default without a word."""
    return catalog.gaps(recipe.config, recipe.trl_fields())


def source_text(entry) -> str:
    """A value's source, with the authors' code's value beside it where that differs."""
    if entry.authors is None:
        return entry.source
    return f"{entry.source} [authors' code: {entry.authors!r}]"


def parse_reward_option(spec: str) -> Named:
    """--reward module:function[=WEIGHT] or path/to/file.py:function[=WEIGHT]."""
    name, _, weight = spec.partition("=")
    if ":" not in name:
        raise PaperrlError(f"--reward {spec}: expected module:function or path/to/file.py:function "
                           "(optionally =WEIGHT)")
    try:
        w = float(weight) if weight else 1.0
    except ValueError:
        raise PaperrlError(f"--reward {spec}: weight '{weight}' is not a number") from None
    return Named(name=name, weight=w, source="--reward")


def default_output_dir(recipe: Recipe) -> str:
    return f"runs/{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve(recipe: Recipe, opts: Options) -> Plan:
    demo_mode = opts.model is None
    fields = recipe.trl_fields()
    values, origin, sources = {}, {}, {}

    def put(name, value, how, source):
        values[name] = value
        origin[name] = how
        sources[name] = source

    if demo_mode:
        for name, (value, why) in recipe.kind.demo.items():
            put(name, value, "demo", why)
    user_fields = {p.split(".", 1)[1] for p in recipe.user_set if p.startswith("config.")}
    for name, entry in recipe.config.items():
        value, how = entry.pick(demo_mode)
        if name in user_fields:
            put(name, entry.value, "user", "--set")
        elif how == "trl-default":
            if name not in values:  # else the embedded default's demo value stands
                origin[name], sources[name] = how, entry.source
        else:
            put(name, value, how, source_text(entry))
    for name in gaps(recipe):
        if name not in origin:
            origin[name], sources[name] = "trl-default", catalog.GAP

    if opts.max_steps is not None:
        put("max_steps", opts.max_steps, "user", "--max-steps")
    put("output_dir", opts.output_dir or default_output_dir(recipe),
        "user" if opts.output_dir else "derived", "--output-dir" if opts.output_dir else "paperrl: runs/<recipe>-<time>")
    if opts.report_to:
        put("report_to", opts.report_to, "user", "--report-to")
    if opts.per_device_batch_size is not None:
        put("per_device_train_batch_size", opts.per_device_batch_size, "user", "--per-device-batch-size")
        user_fields.add("per_device_train_batch_size")
    if opts.vllm:
        put("use_vllm", True, "user", "--vllm")
        put("vllm_mode", opts.vllm, "user", "--vllm")
    if opts.num_processes > 1 and "ddp_find_unused_parameters" not in values:
        put("ddp_find_unused_parameters", False, "derived", "every parameter is used: skip DDP's extra graph walk")

    paper_batch = _derive_batch(recipe, demo_mode, opts.num_processes, values, user_fields, put)
    _apply_rules(recipe, values, fields, user_fields, put)
    for name, value in _hardware_precision().items():
        if name not in user_fields:
            put(name, value, "derived", "hardware: bf16 where the GPU supports it, fp32 on CPU")

    for name in secret.move_to_environment(values):
        recipe.config.pop(name, None)
        sources[name] = f"--set: moved to ${secret.env_name(name)}, never written to a file"

    rewards = []
    if recipe.kind.online:
        specs = list(recipe.demo.rewards if demo_mode and recipe.demo.rewards is not None else recipe.rewards)
        specs += [parse_reward_option(r) for r in opts.rewards]
        rewards = _named(specs, demo_mode, values, fields)
        names = [reward_name(r["name"]) for r in rewards]
        if len(set(names)) != len(names):
            raise PaperrlError(f"rewards: two reward functions share a name ({', '.join(names)}); each must be unique")
        if any(r["weight"] != 1.0 for r in rewards):
            put("reward_weights", [r["weight"] for r in rewards], "derived", "reward weights of the recipe/--reward")
    callbacks = _named(recipe.callbacks, demo_mode, values, fields)
    ds = _dynamic_sampling(recipe, demo_mode, rewards, origin, sources)
    for name in ("exact_token_normaliser", "prompt_template"):
        entry = getattr(recipe, name)
        if entry is not None:
            value, how = entry.pick(demo_mode)
            origin[name] = "user" if name in recipe.user_set else how
            sources[name] = f"{value!r}: {source_text(entry)}"

    _check_exact_normaliser(recipe, values)
    model = opts.model or str(demo.model_dir())
    if opts.dataset:
        dataset = opts.dataset
    elif demo_mode:
        dataset = demo.task_name(recipe.trainer)
    else:
        dataset = recipe.dataset.name if recipe.dataset else None

    argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name in ("paperrl", "__main__.py") else []

    return Plan(
        recipe=recipe, options=opts, demo_mode=demo_mode, model=model, dataset=dataset,
        config=values, origin=origin, sources=sources, rewards=rewards, callbacks=callbacks,
        dynamic_sampling=ds, paper_batch=paper_batch,
        launch={"num_processes": opts.num_processes,
                "command": shlex.join(launch_command(opts, argv or ["<recipe>"]))},
    )


def _check_exact_normaliser(recipe: Recipe, values: dict) -> None:
    """The exact normaliser counts each update's tokens over whole windows of accumulated micro-batches."""
    entry = recipe.exact_token_normaliser
    ga, spg = values.get("gradient_accumulation_steps") or 1, values.get("steps_per_generation")
    if entry is not None and entry.value and spg and spg % ga:
        raise PaperrlError(f"steps_per_generation={spg}: with exact_token_normaliser it must be a multiple of "
                           f"gradient_accumulation_steps={ga} (each update's tokens are counted over its "
                           "micro-batches); set both, or exact_token_normaliser=false")


def _dynamic_sampling(recipe, demo_mode, rewards, origin, sources) -> dict | None:
    """DAPO dynamic sampling's settings for this run, or None when it is off."""
    section = recipe.dynamic_sampling
    if section is None or not section.enabled.pick(demo_mode)[0]:
        return None
    settings = {}
    for name in type(section).model_fields:
        entry = getattr(section, name)
        settings[name], how = entry.pick(demo_mode)
        path = f"dynamic_sampling.{name}"
        origin[path], sources[path] = ("user" if path in recipe.user_set else how), source_text(entry)
    names = ["reward"] + [reward_name(r["name"]) for r in rewards]
    if settings["metric"] not in names:
        where = "--set dynamic_sampling.metric" if "dynamic_sampling.metric" in recipe.user_set else \
            f"{recipe.name}: dynamic_sampling.metric"
        raise PaperrlError(f"{where}: {settings['metric']!r} names no reward function of this run"
                           f"{closest(str(settings['metric']), names)}; accepted: {', '.join(names)}")
    return settings


def _derive_batch(recipe, demo_mode, n, values, user_fields, put) -> dict:
    b = recipe.batch

    def pick(entry):
        return entry.pick(demo_mode)[0] if entry is not None else None

    paper = batchmod.PaperBatch(
        prompts_per_rollout=pick(b.prompts_per_rollout),
        completions_per_prompt=pick(b.completions_per_prompt),
        per_step=pick(b.completions_per_step) or pick(b.examples_per_step),
        steps_per_rollout=pick(b.steps_per_rollout),
    )
    fixed = {k: values[k] for k in user_fields if k in values}
    cap = values.get("per_device_train_batch_size") or batchmod.DEFAULT_MICRO_BATCH
    derived = batchmod.derive(paper, n, fixed, cap)
    source = {
        "num_generations": (b.completions_per_prompt.source if b.completions_per_prompt else ""),
        "per_device_train_batch_size": "paperrl: largest micro-batch up to the default (TRL: 8; demo: 32) that divides the per-process batch",
    }
    for name, value in derived.items():
        put(name, value, "derived",
            source.get(name) or f"paper batch over {n} process(es): " + ", ".join(
                f"{k}={v}" for k, v in vars(paper).items() if v is not None))
    return {name: entry.pick(demo_mode)[0] for name, entry in b if entry is not None and entry.pick(demo_mode)[0]}


def _apply_rules(recipe, values, fields, user_fields, put) -> None:
    for rule in recipe.rules:
        base = values.get(rule.depends_on, fields[rule.depends_on][0])
        if not isinstance(base, int):
            raise PaperrlError(f"{rule.depends_on}={base!r}: rule {rule.text()} needs an integer")
        expected = rule.factor * base
        if rule.field in user_fields:
            if values[rule.field] != expected:
                raise PaperrlError(
                    f"--set {rule.field}={values[rule.field]} contradicts the rule {rule.text()}: with "
                    f"{rule.depends_on}={base} it must be {expected}; set {rule.depends_on} instead and "
                    f"{rule.field} follows"
                )
            continue
        put(rule.field, expected, "derived", f"rule: {rule.text()}")


def build_config(plan: Plan):
    """The real TRL config, built by TRL itself (its __post_init__ runs)."""
    import warnings

    cls = plan.kind.load("config_class")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cls(**plan.config)
        except (ValueError, TypeError, NotImplementedError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise PaperrlError(f"TRL's {cls.__name__} rejected the resolved config: {message}") from None


def dry_run(plan: Plan) -> dict:
    """The dry-run object of the command-line contract."""
    config = build_config(plan)
    out = {
        "recipe": plan.recipe.name,
        "trainer": plan.recipe.trainer,
        "paper": {"arxiv": plan.recipe.arxiv, "url": plan.recipe.url, "title": plan.recipe.title},
        "model": plan.model,
        "dataset": plan.dataset,
        "config": _jsonable(config.to_dict()),
        "origin": plan.origin,
        "sources": plan.sources,
        "rewards": plan.rewards,
        "callbacks": plan.callbacks,
        "dynamic_sampling": plan.dynamic_sampling,
        "batch": None,
        "launch": plan.launch,
    }
    if plan.kind.online and "steps_per_generation" in plan.recipe.trl_fields():  # a GRPO-style rollout batch
        out["batch"] = {**batchmod.describe(out["config"], plan.options.num_processes), "paper": plan.paper_batch}
    return out


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
