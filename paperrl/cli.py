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
from typer.core import TyperGroup

from paperrl import catalog
from paperrl.errors import PaperrlError, closest

class _Group(TyperGroup):
    """`paperrl --help` lists the recipes, one line each (the paper), apart from the other commands."""

    def format_commands(self, ctx, formatter) -> None:
        recipes = catalog.available()
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        for title, is_recipe in (("Recipes (paperrl RECIPE --help: its options)", True), ("Commands", False)):
            rows = [(n, self.commands[n].get_short_help_str(limit)) for n in names if (n in recipes) == is_recipe]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


app = typer.Typer(
    cls=_Group, help="Published LLM post-training recipes, reproduced on Hugging Face TRL.",
    subcommand_metavar="RECIPE|COMMAND [ARGS]...", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None,
    epilog="\b\nExamples:\n"
           "  paperrl gspo                      GSPO on the embedded tiny model (CPU, a minute)\n"
           "  paperrl show dapo                 DAPO's values, sources and TRL's defaults\n"
           "  paperrl dapo --model M --dry-run  every resolved setting; loads nothing\n"
           "  paperrl doctor dapo --model M     batch, memory and launch on this machine",
)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True,
                                       help="Show the versions of paperrl, TRL, transformers, torch, accelerate and exit.")) -> None:
    if version:
        _print_version()
        raise typer.Exit(0)


def _print_version() -> None:
    from paperrl.doctor import versions

    print(versions())


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


# ---------------------------------------------------------------- fast commands


@app.command("list")
def list_recipes(all_: bool = typer.Option(False, "--all", help="also the Paper Index entries the installed TRL "
                                                                 "cannot train, each with its reason"),
                 family: Optional[str] = typer.Option(None, "--family", metavar="FAMILY",
                                                      help="only this trainer family (grpo, dpo, ...)")) -> None:
    """List the recipes shipped with paperrl, by trainer family."""
    from rich.markup import escape
    from rich.table import Table

    entries = catalog.entries()
    families = sorted({e.family for e in entries})
    if family is not None and family not in families:
        raise PaperrlError(f"--family {family}: no such family{closest(family, families)}; accepted: {', '.join(families)}")
    shown = [e for e in entries if (family is None or e.family == family) and (all_ or e.runnable)]
    table = Table("family", "recipe", "paper", "year", "status", box=None)
    for e in shown:
        table.add_row(e.family, e.name, escape(e.title), str(e.year or ""), e.status)
    _console().print(table)
    runnable = sum(e.runnable for e in shown)
    options = sum(e.status == "option" for e in shown)
    summary = f"{runnable} recipes" + (f", {len(shown) - runnable - options} entries the installed TRL cannot train, "
                                      f"{options} options of every recipe" if all_ else "")
    _console().print(summary + ("" if all_ else "; `paperrl list --all` adds the Paper Index entries the installed "
                                                "TRL cannot train and those that are options"))
    if all_ and runnable < len(shown):
        reasons = Table("entry", "why it is not a recipe", box=None)
        for e in shown:
            if not e.runnable:
                reasons.add_row(e.name, escape(e.reason))
        _console().print(reasons)


@app.command("show")
def show(recipe: str = typer.Argument(..., metavar="RECIPE|FILE", help="a recipe name or a recipe file")) -> None:
    """Every value of a recipe: paper value, demo value, TRL's default and source."""
    from rich.table import Table

    r = _read(recipe)
    defaults = catalog.trl_defaults(r["trainer"])
    con = _console()
    con.print(f"[bold]{r['name']}[/bold]: {r['title']} ({catalog.cite(r)}), trainer {r['trainer']}\n{r['summary']}")
    if r.get("partial"):
        con.print(f"[yellow]partial:[/yellow] {r['partial']}")
    table = Table("field", "value", "demo", "TRL default", "from", "source", box=None)
    for name, entry in (r.get("config") or {}).items():
        table.add_row(name, *_cells(entry, defaults[name]))
    for name in catalog.gaps(r.get("config") or {}, defaults):
        table.add_row(name, "-", "-", defaults[name], "[yellow]gap[/yellow]", catalog.GAP)
    for section in ("batch", "dynamic_sampling"):
        for name, entry in (r.get(section) or {}).items():
            table.add_row(f"{section}.{name}", *_cells(entry, ""))
    con.print(table)
    for rule in r.get("rules") or []:
        factor, other = (part.strip() for part in rule["equals"].split("*"))
        con.print(f"rule: {rule['field']} = {factor} × {other} ({rule['source']})")
    for section in ("rewards", "callbacks"):
        for item in r.get(section) or []:
            args = ", ".join(f"{k}={_fmt(v, 'value')}" for k, v in (item.get("args") or {}).items())
            con.print(f"{section[:-1]}: {item['name']}({args}) weight {item.get('weight', 1.0)}  [{item.get('source', '')}]")
    if r.get("dataset"):
        con.print(f"dataset with --model: {r['dataset']['name']}  [{r['dataset']['source']}]")
    con.print(f"demo: {r['demo']['note']}")


def _read(ref: str) -> dict:
    """A recipe as written, without pydantic (show and diff start in under 0.3 s). A shipped recipe is
    validated by the test suite; a user's file is validated here, every problem at once, as a run would."""
    path = catalog.locate(ref)
    if not catalog.shipped(path):
        from paperrl import recipe as recipes

        recipes.load(str(path))
    return catalog.read_raw(path)


def _cells(entry: dict, trl_default: str) -> tuple[str, ...]:
    """value, demo, TRL default, from (paper, authors, ...) and source of one sourced value."""
    from rich.markup import escape

    source = entry["source"] + (f" [authors' code: {entry['authors']!r}]" if entry.get("authors") is not None else "")
    return _fmt(entry, "value"), _fmt(entry, "demo"), trl_default, entry.get("origin", "paper") if "value" in entry else "", \
        escape(source)


def _fmt(entry: dict, which: str) -> str:
    return repr(entry[which]) if which in entry else "-"


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
def diff(a: str = typer.Argument(..., metavar="A", help="a recipe name or a recipe file"),
         b: str = typer.Argument(..., metavar="B", help="a recipe name or a recipe file")) -> None:
    """Compare two recipes setting by setting (paper values)."""
    from rich.table import Table

    left, right = _flatten(_read(a)), _flatten(_read(b))
    table = Table("setting", a, b, box=None)
    for key in sorted(set(left) | set(right)):
        lv, rv = left.get(key, "-"), right.get(key, "-")
        if lv != rv:
            table.add_row(key, str(lv), str(rv))
    _console().print(table)


def _flatten(r: dict) -> dict:
    out = {"trainer": r["trainer"]}
    for section in ("config", "batch"):
        for name, entry in (r.get(section) or {}).items():
            out[f"{section}.{name}"] = entry["value"] if "value" in entry else "(TRL default)"
    for rule in r.get("rules") or []:
        out[f"rule.{rule['field']}"] = rule["equals"]
    for section in ("rewards", "callbacks"):
        for item in r.get(section) or []:
            out[f"{section}.{item['name']}"] = {k: v.get("value") for k, v in (item.get("args") or {}).items()} or "on"
    ds = r.get("dynamic_sampling") or {}
    if ds.get("enabled", {}).get("value"):
        for name, entry in ds.items():
            out[f"dynamic_sampling.{name}"] = entry.get("value")
    return out


# ---------------------------------------------------------------- recipe commands


def _options(**kw):
    from paperrl.options import Options

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # started by hand with `accelerate launch -m paperrl ...`: one process of `world`
        kw["num_processes"] = world
        kw["output_dir"] = kw["output_dir"] or "runs/" + os.environ.get("PAPERRL_RUN_NAME", "paperrl-distributed")
    return Options(**{k: v if v is not None or k not in _LISTS else [] for k, v in kw.items()})


_LISTS = ("columns", "sets", "rewards")  # repeatable options: typer gives None when none is given


def _execute(recipe_ref: str, kw: dict) -> None:
    from paperrl import recipe as recipes
    from paperrl.resolve import dry_run, resolve

    opts = _options(**kw)
    plan_json = os.environ.get("PAPERRL_PLAN")
    if plan_json:  # a worker started by `paperrl ... --num-processes N`: the plan was resolved once, by the launcher
        from paperrl.resolve import Plan

        plan = Plan.from_json(plan_json)
    else:
        try:
            plan = resolve(recipes.load(recipe_ref, opts.sets), opts)
        except PaperrlError as exc:
            if opts.dry_run or not opts.output_dir:
                raise
            from paperrl.rundir import check_output_dir

            # report the output directory's problem too: every mistake at once, before anything heavy
            raise PaperrlError(*exc.problems, *check_output_dir(opts.output_dir, opts)) from None
    if opts.dry_run:
        out = dry_run(plan)
        if opts.format == "python":
            from paperrl.export import script

            sys.stdout.write(script(plan))
        elif opts.format == "json":
            sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
        elif opts.format == "yaml":
            sys.stdout.write(yaml.safe_dump(json.loads(json.dumps(out, default=str)), sort_keys=False))
        else:
            _print_plan(out)
            for note in plan.kind.notes:
                _console().print(f"note: {note}")
        return
    from paperrl.train import run

    raise typer.Exit(run(plan))


def _print_plan(out: dict) -> None:
    from rich.table import Table

    con = _console()
    con.print(f"[bold]{out['recipe']}[/bold] ({out['paper']['title']}, {catalog.cite(out['paper'])}) "
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
    """Attach the options of `paperrl RECIPE` and `paperrl run FILE` (paperrl/options.py) to a command."""
    import inspect
    import typing

    from paperrl.options import Options, cli_fields

    hints = typing.get_type_hints(Options)
    extra = []
    for name, _, default, meta in cli_fields():
        hint = hints[name]
        if typing.get_origin(hint) is list:
            hint = Optional[List[str]]
        elif type(None) in typing.get_args(hint):
            hint = Optional[next(a for a in typing.get_args(hint) if a is not type(None))]
        option = typer.Option(None if meta.get("many") else default, meta["flag"], metavar=meta["metavar"],
                              help=meta["help"])
        extra.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint))
    sig = inspect.signature(fn)
    kept = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    fn.__signature__ = sig.replace(parameters=[*kept, *extra])
    return fn


def _add_recipe_commands(argv: list[str]) -> None:
    """One command per shipped recipe, its help the paper. Read here, not on import: show and diff stay fast.
    `paperrl RECIPE ...` needs only its own command (typer builds every registered one on each call); each is
    registered once, however often main() runs in one process."""
    available = catalog.available()
    wanted = [argv[0]] if argv and argv[0] in available else list(available)
    registered = {c.name for c in app.registered_commands}
    for name in wanted:
        if name in registered:
            continue
        raw = catalog.read_raw(available[name])
        paper = f"{raw.get('title')} ({catalog.cite(raw)})"
        command = _recipe_command(name)
        command.__doc__ = (f"{paper}\n\n{raw.get('summary', '')}\n\nTrains with the paper's values (with --model) or the "
                           f"demo values on the embedded tiny model; `paperrl show {name}` lists them with their sources.")
        app.command(name, short_help=paper)(_recipe_options(command))


def _recipe_command(name: str):
    def command(**kw) -> None:
        _execute(name, kw)

    command.__name__ = name.replace("-", "_")
    return command


def _run(file: str = typer.Argument(..., metavar="FILE", help="a recipe file (paperrl cp RECIPE FILE makes one)"), **kw) -> None:
    """Train with a recipe file of your own (same options as a recipe command)."""
    _execute(file, kw)


app.command("run")(_recipe_options(_run))


@app.command("serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(ctx: typer.Context, model: str = typer.Argument(..., metavar="ID|DIR", help="hub id or local directory")) -> None:
    """Start TRL's vLLM server for `--vllm server` runs (extra options go to `trl vllm-serve`)."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("vllm") is None:
        raise PaperrlError("paperrl serve: vLLM is not installed; install it with: pip install 'paperrl[vllm]'")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "trl.cli.main", "vllm-serve", "--model", model, *ctx.args]))


@app.command("verify")
def verify(recipe: Optional[str] = typer.Argument(None, metavar="[RECIPE|FILE]", help="a recipe, or --all"),
           all_: bool = typer.Option(False, "--all", help="every shipped recipe"),
           set_: Optional[List[str]] = typer.Option(None, "--set", metavar="NAME=VALUE", help="as for a run (repeatable)"),
           format: str = typer.Option("table", "--format", metavar="[table|json]")) -> None:
    """Check that TRL computes each recipe's paper objective on a fixed batch (exit 1 if one fails)."""
    from paperrl.verify import main as verify_main

    raise typer.Exit(verify_main(recipe, all_, set_ or [], format))


@app.command("reproduce")
def reproduce(paper: Optional[str] = typer.Argument(None, metavar="[PAPER|FILE]", help="a recipe with a claim file, a claim file <recipe>.yaml, or --all"),
              all_: bool = typer.Option(False, "--all", help="every paper with a claim file"),
              seeds: Optional[int] = typer.Option(None, "--seeds", metavar="N", help="reporting seeds 1..N; default: each claim's"),
              output_dir: Optional[str] = typer.Option(None, "--output-dir", metavar="DIR", help="default: runs/reproduce"),
              format: str = typer.Option("table", "--format", metavar="[table|json]"),
              max_steps: Optional[int] = typer.Option(None, "--max-steps", metavar="N", help="smoke test: N steps per run instead of each claim's"),
              jobs: int = typer.Option(1, "--jobs", metavar="N", help="runs at a time (each uses one thread)"),
              overwrite: bool = typer.Option(False, "--overwrite", help="replace the runs in a non-empty --output-dir")) -> None:
    """Each paper's claims as pre-registered experiments on the embedded default: both arms over seeds, a verdict and a figure."""
    from paperrl.reproduce import main as reproduce_main

    raise typer.Exit(reproduce_main(paper, all_, seeds, output_dir, format, max_steps, jobs, overwrite))


@app.command("report")
def report(run_dirs: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="run directories (with metrics.jsonl)"),
           out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="default: report.png in the (first) run directory"),
           format: str = typer.Option("png", "--format", metavar="[png|md]"),
           smooth: float = typer.Option(0.0, "--smooth", metavar="ALPHA", help="EMA smoothing in [0, 1); 0 is off")) -> None:
    """Plot one run, or several overlaid, from their metrics.jsonl."""
    from paperrl.report import main as report_main

    raise typer.Exit(report_main(run_dirs, out, format, smooth))


@app.command("doctor")
def doctor(recipe: Optional[str] = typer.Argument(None, metavar="[RECIPE|FILE]",
                                                  help="also show this recipe's batch split, memory estimate and launch command"),
           model: Optional[str] = typer.Option(None, "--model", metavar="ID|DIR", help="the model a run would train; absent: the embedded tiny model"),
           num_processes: Optional[int] = typer.Option(None, "--num-processes", metavar="N", help="default: one per GPU")) -> None:
    """What a run would use on this machine: versions, devices, precision, extras, batch, memory, launch."""
    from rich.table import Table
    from rich.text import Text

    from paperrl.doctor import report as doctor_report

    table = Table(show_header=False, box=None)
    for label, text in doctor_report(recipe, model, num_processes):
        table.add_row(label, Text(text))  # not markup: 'paperrl[vllm]' is text
    _console().print(table)


# ---------------------------------------------------------------- entry point


def _fast_path(argv: list[str]) -> bool:
    """list/show/diff/cp with plain arguments, without typer's parameter machinery (which imports
    pydantic's validators: ~0.2 s of the 0.3 s start-up budget). Anything else goes through typer."""
    if argv == ["--version"]:
        _print_version()
        return True
    if argv in (["list"], ["list", "--all"]):
        list_recipes(all_=len(argv) == 2, family=None)  # typer's Option defaults would be truthy here
        return True
    commands = {"show": (show, 1), "diff": (diff, 2), "cp": (cp, 2)}
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
    commands = [c.name for c in app.registered_commands]
    recipes = catalog.available()
    if argv and argv[0] in catalog.unavailable():
        _fail(catalog.unavailable_error(argv[0]))
    if argv and not argv[0].startswith("-") and argv[0] not in {*commands, *recipes}:
        _fail(PaperrlError(f"unknown recipe or command '{argv[0]}'{closest(argv[0], [*commands, *recipes])}; "
                           f"recipes: {', '.join(recipes)}; commands: {', '.join(commands)}"))
    try:
        if _fast_path(argv):
            sys.exit(0)
        _add_recipe_commands(argv)
        code = app(prog_name="paperrl", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except PaperrlError as exc:
        _fail(exc)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # a usage error: click's, or typer's own click
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
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
