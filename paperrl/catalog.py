"""The shipped recipes: discovery and reading, with nothing heavier than YAML (the CLI's fast paths)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from paperrl.errors import PaperrlError, closest



def _recipe_dir() -> Path:
    """recipes/<family>/<name>.yaml: beside paperrl/ in a source checkout, inside it in an installed wheel."""
    package = Path(str(resources.files("paperrl")))
    if (package.parent / "pyproject.toml").is_file() and (package.parent / "recipes").is_dir():
        return package.parent / "recipes"
    return package / "recipes"


RECIPE_DIR = _recipe_dir()  # one folder per trainer family
UNAVAILABLE_FILE = Path(str(resources.files("paperrl") / "unavailable.yaml"))
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: several times faster


def available() -> dict[str, Path]:
    """{name: file} of the shipped recipes, recipes/<family>/<name>.yaml, by name."""
    return {p.stem: p for p in sorted(RECIPE_DIR.glob("*/*.yaml"), key=lambda p: p.stem)}


@dataclass(frozen=True)
class Entry:
    """One line of `paperrl list`: a recipe, or a Paper Index entry the installed TRL cannot train."""

    family: str
    name: str
    title: str
    year: int | None
    status: str  # recipe, partial; unavailable (the installed TRL cannot train it) or option (of every recipe)
    reason: str = ""

    @property
    def runnable(self) -> bool:
        return self.status in ("recipe", "partial")


def cite(raw: dict) -> str:
    """Where the paper is: "arXiv 2507.18071", or the post's address for an entry without a paper."""
    return f"arXiv {raw['arxiv']}" if raw.get("arxiv") else str(raw.get("url") or "no paper")


def year_of(raw: dict) -> int | None:
    """The recipe's `year`, else the arXiv id's (YYMM.NNNNN)."""
    if raw.get("year"):
        return int(raw["year"])
    arxiv = str(raw.get("arxiv") or "")
    return 2000 + int(arxiv[:2]) if arxiv[:4].isdigit() else None


def entries() -> list[Entry]:
    """Every recipe and every unavailable entry, by family, then year, then name."""
    out = []
    for name, path in available().items():
        raw = read_raw(path)
        out.append(Entry(path.parent.name, name, str(raw.get("title")), year_of(raw),
                         "partial" if raw.get("partial") else "recipe", str(raw.get("partial") or "")))
    for name, raw in unavailable().items():
        out.append(Entry(raw.get("family", "other"), name, str(raw.get("title")), year_of(raw),
                         raw.get("status", "unavailable"), str(raw.get("reason"))))
    return sorted(out, key=lambda e: (e.family, e.year or 0, e.name))


def shipped(path: Path) -> bool:
    return RECIPE_DIR in path.parents


def unavailable() -> dict[str, dict]:
    """{name: entry} of the Paper Index entries that are not recipes, each with its reason: the installed TRL cannot
    train it, or (status: option) it is an option of every recipe."""
    return read_raw(UNAVAILABLE_FILE)


def unavailable_error(name: str) -> PaperrlError:
    from importlib.metadata import version

    entry = unavailable()[name]
    if entry.get("status") == "option":
        return PaperrlError(f"{name}: {entry['title']} ({cite(entry)}, Paper Index: {entry['section']}) is "
                            f"{entry['reason']}")
    return PaperrlError(f"{name}: {entry['title']} ({cite(entry)}, Paper Index: {entry['section']}) cannot "
                        f"be trained with the installed TRL {version('trl')}: {entry['reason']}")


def locate(name_or_path: str) -> Path:
    recipes = available()
    if name_or_path in recipes:
        return recipes[name_or_path]
    if name_or_path in unavailable():
        raise unavailable_error(name_or_path)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise PaperrlError(f"{name_or_path}: no such recipe file")
        return path
    raise PaperrlError(
        f"unknown recipe '{name_or_path}'{closest(name_or_path, recipes)}; "
        f"accepted: {', '.join(recipes)} or a path to a .yaml recipe file"
    )


def read_raw(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PaperrlError(f"{path}: cannot read recipe file ({exc.__class__.__name__}: {exc})") from None
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise PaperrlError(f"{path}: malformed YAML{line}: {problem}") from None
    except RecursionError:
        raise PaperrlError(f"{path}: malformed YAML: nested too deeply") from None
    if not isinstance(data, dict):
        raise PaperrlError(f"{path}: a recipe file must be a YAML mapping (name, trainer, config, ...), "
                           f"got {type(data).__name__}")
    return data


# Values that change a run most; a recipe that states none for one of them shows it as a gap.
MATTERS = ("learning_rate", "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_completion_length",
           "max_length")
GAP = "gap: the recipe states no source for this value; TRL's default is used"


def gaps(config: dict, fields) -> list[str]:
    """Fields that matter for a run which a recipe's `config` leaves to TRL's default without a word."""
    return [name for name in MATTERS if name in fields and name not in config]


def trl_defaults(trainer: str) -> dict[str, str]:
    """{field: repr(TRL's default)} for a trainer kind's config, as `paperrl show` prints them.

    Reading them from TRL's and transformers' sources costs ~0.1 s of show's 0.3 s, so they are kept
    on disk, keyed by both installed packages (their __init__ files' times and sizes) and the reader's own code."""
    import importlib.util

    from paperrl import demo, trl_fields
    from paperrl.kinds import KINDS

    stamps = [(st.st_mtime_ns, st.st_size) for st in (os.stat(importlib.util.find_spec(p).origin)
                                                      for p in ("trl", "transformers"))]
    key = hashlib.sha256(json.dumps([trainer, stamps, Path(trl_fields.__file__).read_text(encoding="utf-8")])
                         .encode()).hexdigest()[:16]
    path = demo.cache_dir() / "trl-defaults" / f"{trainer}-{key}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    defaults = {name: repr(default) for name, (default, _) in trl_fields.config_fields(KINDS[trainer].config_class).items()}
    try:  # atomically: concurrent runs may race
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(defaults), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: read the sources every time
    return defaults
