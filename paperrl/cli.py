"""The command line: list, show, cp, diff, run, verify, report, and one command per recipe.

Imports stay light here (typer, rich, pydantic, yaml): torch, transformers and trl are imported
only by the commands that need them, so that --help, list, show, diff and cp are instant.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
import yaml

from paperrl import catalog
from paperrl.errors import PaperrlError, closest

app = typer.Typer(
    help="Published LLM post-training recipes, reproduced on Hugging Face TRL.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


# ---------------------------------------------------------------- fast commands


@app.command("list")
def list_recipes() -> None:
    """List the recipes shipped with paperrl."""
    from rich.table import Table

    table = Table("recipe", "trainer", "paper", "arXiv", box=None)
    for name, path in catalog.available().items():
        raw = catalog.read_raw(path)
        table.add_row(name, str(raw.get("trainer")), str(raw.get("title")), str(raw.get("arxiv")))
    _console().print(table)


@app.command("show")
def show(recipe: str = typer.Argument(..., help="recipe name or recipe file")) -> None:
    """Every value of a recipe: paper value, demo value, source and TRL's default."""
    from rich.table import Table

    from paperrl import recipe as recipes

    r = recipes.load(recipe)
    fields = r.trl_fields()
    con = _console()
    con.print(f"[bold]{r.name}[/bold]: {r.title} (arXiv {r.arxiv}), trainer {r.trainer}\n{r.summary}")
    table = Table("field", "paper", "demo", "TRL default", "source", box=None)
    for name, entry in r.config.items():
        table.add_row(name, _fmt(entry, "value"), _fmt(entry, "demo"), repr(fields[name][0]), entry.source)
    for name, entry in r.batch:
        if entry is not None:
            table.add_row(f"batch.{name}", _fmt(entry, "value"), _fmt(entry, "demo"), "", entry.source)
    if r.dynamic_sampling:
        for name, entry in r.dynamic_sampling:
            table.add_row(f"dynamic_sampling.{name}", _fmt(entry, "value"), _fmt(entry, "demo"), "", entry.source)
    con.print(table)
    for rule in r.rules:
        con.print(f"rule: {rule.text()}")
    for section in ("rewards", "callbacks"):
        for item in getattr(r, section):
            args = ", ".join(f"{k}={_fmt(v, 'value')}" for k, v in item.args.items())
            con.print(f"{section[:-1]}: {item.name}({args}) weight {item.weight}  [{item.source}]")
    if r.dataset:
        con.print(f"dataset with --model: {r.dataset.name}  [{r.dataset.source}]")
    con.print(f"demo: {r.demo.note}")


def _fmt(entry, which: str) -> str:
    return repr(getattr(entry, which)) if which in entry.model_fields_set else "-"


@app.command("cp")
def cp(recipe: str, file: Path, overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Copy a recipe file out to edit it; run it with `paperrl run FILE`."""
    source = catalog.locate(recipe)
    if file.exists() and not overwrite:
        raise PaperrlError(f"{file}: already exists; pass --overwrite to replace it")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    except OSError as exc:
        raise PaperrlError(f"{file}: cannot write ({exc.strerror})") from None
    _console().print(f"copied {source.name} to {file}; run it with: paperrl run {file}")


@app.command("diff")
def diff(a: str, b: str) -> None:
    """Compare two recipes setting by setting (paper values)."""
    from rich.table import Table

    from paperrl import recipe as recipes

    left, right = _flatten(recipes.load(a)), _flatten(recipes.load(b))
    table = Table("setting", a, b, box=None)
    for key in sorted(set(left) | set(right)):
        lv, rv = left.get(key, "-"), right.get(key, "-")
        if lv != rv:
            table.add_row(key, str(lv), str(rv))
    _console().print(table)


def _flatten(r) -> dict:
    out = {"trainer": r.trainer}
    for name, entry in r.config.items():
        out[f"config.{name}"] = entry.value if "value" in entry.model_fields_set else "(TRL default)"
    for name, entry in r.batch:
        if entry is not None:
            out[f"batch.{name}"] = entry.value
    for rule in r.rules:
        out[f"rule.{rule.field}"] = rule.equals
    for section in ("rewards", "callbacks"):
        for item in getattr(r, section):
            out[f"{section}.{item.name}"] = {k: v.value for k, v in item.args.items()} or "on"
    if r.dynamic_sampling and r.dynamic_sampling.enabled.value:
        for name, entry in r.dynamic_sampling:
            out[f"dynamic_sampling.{name}"] = entry.value
    return out


# ---------------------------------------------------------------- recipe commands


def _options(**kw):
    from paperrl.resolve import Options

    multi = []
    for flag in ("num_machines", "machine_rank", "main_process_ip", "main_process_port"):
        if kw.get(flag) is not None:
            multi += [f"--{flag}", str(kw[flag])]
    if kw["num_processes"] < 1:
        raise PaperrlError(f"--num-processes {kw['num_processes']}: expected an integer >= 1")
    if kw["vllm"] not in (None, "colocate", "server"):
        raise PaperrlError(f"--vllm {kw['vllm']}: accepted: colocate, server")
    if kw["format"] not in ("table", "json", "yaml", "python"):
        raise PaperrlError(f"--format {kw['format']}: accepted: table, json, yaml, python")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # started by hand with `accelerate launch -m paperrl ...`: one process of `world`
        kw["num_processes"] = world
        kw["output_dir"] = kw["output_dir"] or "runs/" + os.environ.get("PAPERRL_RUN_NAME", "paperrl-distributed")
    return Options(
        model=kw["model"], dataset=kw["dataset"], split=kw["split"], subset=kw["subset"], columns=kw["column"] or [],
        output_dir=kw["output_dir"], sets=kw["set"] or [], rewards=kw["reward"] or [], max_steps=kw["max_steps"],
        num_processes=kw["num_processes"], per_device_batch_size=kw["per_device_batch_size"],
        accelerate_config=kw["accelerate_config"], multi_node=multi, lora_r=kw["lora_r"],
        lora_alpha=kw["lora_alpha"], vllm=kw["vllm"], report_to=kw["report_to"], overwrite=kw["overwrite"],
        resume=kw["resume"],
    )


def _execute(recipe_ref: str, kw: dict) -> None:
    from paperrl import recipe as recipes
    from paperrl.resolve import dry_run, resolve

    plan_file = os.environ.get("PAPERRL_PLAN")
    if plan_file:  # a worker started by `paperrl ... --num-processes N`: the plan was resolved once, by the launcher
        import pickle

        plan = pickle.loads(Path(plan_file).read_bytes())
    else:
        opts = _options(**kw)
        try:
            plan = resolve(recipes.load(recipe_ref, opts.sets), opts)
        except PaperrlError as exc:
            if kw["dry_run"] or not opts.output_dir:
                raise
            from paperrl.train import check_output_dir

            # report the output directory's problem too: every mistake at once, before anything heavy
            raise PaperrlError(*exc.problems, *check_output_dir(opts.output_dir, opts)) from None
    if kw["dry_run"]:
        out = dry_run(plan)
        if kw["format"] == "python":
            from paperrl.export import script

            sys.stdout.write(script(plan))
        elif kw["format"] == "json":
            sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
        elif kw["format"] == "yaml":
            sys.stdout.write(yaml.safe_dump(json.loads(json.dumps(out, default=str)), sort_keys=False))
        else:
            _print_plan(out)
        return
    from paperrl.train import run

    raise typer.Exit(run(plan))


def _print_plan(out: dict) -> None:
    from rich.table import Table

    con = _console()
    con.print(f"[bold]{out['recipe']}[/bold] ({out['paper']['title']}, arXiv {out['paper']['arxiv']}) "
              f"trainer {out['trainer']}\nmodel: {out['model']}\ndataset: {out['dataset']}")
    table = Table("field", "value", "origin", "source", box=None)
    for name, how in out["origin"].items():
        if name.startswith("dynamic_sampling."):
            value = repr(out["dynamic_sampling"][name.split(".", 1)[1]])
        elif name in out["config"]:
            value = repr(out["config"][name])
        else:  # a paperrl mechanism: its value leads its source
            value = ""
        table.add_row(name, value, how, out["sources"].get(name, ""))
    con.print(table)
    for r in out["rewards"]:
        con.print(f"reward: {r['name']} {r['args'] or ''} weight {r['weight']}")
    for c in out["callbacks"]:
        con.print(f"callback: {c['name']} {c['args']}")
    if out["batch"]:
        con.print("batch: " + ", ".join(f"{k}={v}" for k, v in out["batch"].items()))
    con.print(f"launch: {out['launch']['command']}")


def _recipe_options(fn):
    """Attach the shared options of `paperrl RECIPE` and `paperrl run FILE` to a command."""
    import inspect

    params = [
        ("model", Optional[str], typer.Option(None, "--model", help="hub id or local directory; absent: the embedded tiny model")),
        ("dataset", Optional[str], typer.Option(None, "--dataset", help="hub id or local .jsonl/.json/.parquet/.csv file or directory")),
        ("split", Optional[str], typer.Option(None, "--split", help="dataset split (hub datasets)")),
        ("subset", Optional[str], typer.Option(None, "--subset", help="dataset configuration (hub datasets)")),
        ("column", Optional[List[str]], typer.Option(None, "--column", help="NAME=COLUMN: read NAME (prompt, chosen, solution, ...) from COLUMN")),
        ("output_dir", Optional[str], typer.Option(None, "--output-dir")),
        ("set", Optional[List[str]], typer.Option(None, "--set", help="NAME=VALUE: a TRL config field or a recipe path (repeatable)")),
        ("reward", Optional[List[str]], typer.Option(None, "--reward", help="module:function or file.py:function, optionally =WEIGHT (repeatable)")),
        ("max_steps", Optional[int], typer.Option(None, "--max-steps")),
        ("num_processes", int, typer.Option(1, "--num-processes", help="processes to launch with accelerate")),
        ("per_device_batch_size", Optional[int], typer.Option(None, "--per-device-batch-size", help="micro-batch per device; accumulation is derived")),
        ("accelerate_config", Optional[str], typer.Option(None, "--accelerate-config", help="multi_gpu, zero2, zero3, fsdp2, ... or a file")),
        ("num_machines", Optional[int], typer.Option(None, "--num-machines")),
        ("machine_rank", Optional[int], typer.Option(None, "--machine-rank")),
        ("main_process_ip", Optional[str], typer.Option(None, "--main-process-ip")),
        ("main_process_port", Optional[int], typer.Option(None, "--main-process-port")),
        ("lora_r", Optional[int], typer.Option(None, "--lora-r", help="train a LoRA adapter of this rank (peft)")),
        ("lora_alpha", Optional[int], typer.Option(None, "--lora-alpha")),
        ("vllm", Optional[str], typer.Option(None, "--vllm", help="colocate or server")),
        ("report_to", Optional[str], typer.Option(None, "--report-to", help="tensorboard, wandb, ...")),
        ("overwrite", bool, typer.Option(False, "--overwrite")),
        ("resume", bool, typer.Option(False, "--resume")),
        ("dry_run", bool, typer.Option(False, "--dry-run", help="print the resolved settings; load nothing")),
        ("format", str, typer.Option("table", "--format", help="table, json, yaml, or python: a standalone plain-TRL script (with --dry-run)")),
    ]
    sig = inspect.signature(fn)
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=t) for n, t, d in params]
    kept = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    fn.__signature__ = sig.replace(parameters=[*kept, *extra])
    return fn


def _make_recipe_command(name: str, title: str):
    def command(**kw) -> None:
        _execute(name, kw)

    command.__name__ = name.replace("-", "_")
    command.__doc__ = f"Train with the {title} recipe."
    app.command(name)(_recipe_options(command))


def _run(file: str = typer.Argument(..., help="a recipe file"), **kw) -> None:
    """Train with a recipe file of your own (same options as a recipe command)."""
    _execute(file, kw)


app.command("run")(_recipe_options(_run))

for _name, _path in catalog.available().items():
    _make_recipe_command(_name, _name)


@app.command("serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(ctx: typer.Context, model: str = typer.Argument(..., help="hub id or local directory")) -> None:
    """Start TRL's vLLM server for `--vllm server` runs (extra options go to `trl vllm-serve`)."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("vllm") is None:
        raise PaperrlError("paperrl serve: vLLM is not installed; install it with: pip install 'paperrl[vllm]'")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "trl.cli.main", "vllm-serve", "--model", model, *ctx.args]))


@app.command("verify")
def verify(recipe: Optional[str] = typer.Argument(None), all_: bool = typer.Option(False, "--all"),
           set_: Optional[List[str]] = typer.Option(None, "--set"),
           format: str = typer.Option("table", "--format", help="table or json")) -> None:
    """Check that TRL computes each recipe's paper objective on a fixed batch."""
    from paperrl.verify import main as verify_main

    raise typer.Exit(verify_main(recipe, all_, set_ or [], format))


@app.command("report")
def report(run_dirs: List[Path], out: Optional[Path] = typer.Option(None, "--out"),
           format: str = typer.Option("png", "--format", help="png or md"),
           smooth: float = typer.Option(0.0, "--smooth", help="EMA smoothing in [0, 1); 0 is off")) -> None:
    """Plot one run, or several overlaid, from their metrics.jsonl."""
    from paperrl.report import main as report_main

    raise typer.Exit(report_main(run_dirs, out, format, smooth))


# ---------------------------------------------------------------- entry point


def _fast_path(argv: list[str]) -> bool:
    """list/show/diff/cp with plain arguments, without typer's parameter machinery (which imports
    pydantic's validators: ~0.2 s of the 0.3 s start-up budget). Anything else goes through typer."""
    commands = {"list": (list_recipes, 0), "show": (show, 1), "diff": (diff, 2), "cp": (cp, 2)}
    if not argv or argv[0] not in commands or any(a.startswith("-") for a in argv[1:]):
        return False
    fn, arity = commands[argv[0]]
    if len(argv) - 1 != arity:
        return False
    if fn is cp:
        cp(argv[1], Path(argv[2]), overwrite=False)  # typer's Option default would be truthy here
    else:
        fn(*argv[1:])
    return True


def main() -> None:
    argv = sys.argv[1:]
    known = {c.name for c in app.registered_commands}
    if argv and not argv[0].startswith("-") and argv[0] not in known:
        _fail(PaperrlError(f"unknown recipe or command '{argv[0]}'{closest(argv[0], known)}; "
                           f"recipes: {', '.join(catalog.available())}; commands: list, show, cp, diff, run, "
                           "serve, verify, report"))
    try:
        if _fast_path(argv):
            sys.exit(0)
        code = app(prog_name="paperrl", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except PaperrlError as exc:
        _fail(exc)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if os.environ.get("PAPERRL_DEBUG") == "1":
            raise
        print(f"paperrl: internal error: {exc.__class__.__name__}: {exc} "
              "(set PAPERRL_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(1)


def _fail(exc: PaperrlError) -> None:
    if os.environ.get("PAPERRL_DEBUG") == "1":
        raise exc
    for problem in exc.problems:
        print("error: " + " ".join(str(problem).split()), file=sys.stderr)  # one line per problem
    sys.exit(2)
