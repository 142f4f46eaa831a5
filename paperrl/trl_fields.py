"""The installed TRL's config fields and defaults, read from its source without importing it.

`paperrl list/show/diff/cp` must start in well under a second, and importing trl costs ~3 s.
A TRL config is a dataclass: its fields and defaults are plain assignments in the class body,
so parsing the source files of the class and its bases (TrainingArguments included) gives the
same names and defaults that `dataclasses.fields()` would, for the TRL that is installed.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

_MISSING = object()


@functools.cache
def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # a top-level spec: finds it, imports nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _module_file(module: str) -> Path | None:
    top, *rest = module.split(".")
    root = _package_dir(top)
    if root is None:
        return None
    base = root.joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@functools.cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _lazy_submodule(package: str, name: str) -> str | None:
    """Where a lazily exported name lives: `{"training_args": ["TrainingArguments"]}` in __init__."""
    path = _module_file(package)
    if path is None:
        return None
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if (isinstance(key, ast.Constant) and isinstance(value, ast.List)
                        and any(isinstance(e, ast.Constant) and e.value == name for e in value.elts)):
                    return f"{package}.{key.value}"
    return None


def _resolve_import(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts[: len(parts) - node.level]
    return ".".join(base + ([node.module] if node.module else []))


def _find_class(module: str, name: str, depth: int = 0) -> tuple[str, ast.ClassDef] | None:
    path = _module_file(module)
    if path is None or depth > 4:
        return None
    tree = _parse(path)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return module, node
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            source = _resolve_import(module, node)
            found = _find_class(source, name, depth + 1)
            if found is None:
                sub = _lazy_submodule(source, name)
                found = _find_class(sub, name, depth + 1) if sub else None
            return found
    return None


def _default(value: ast.expr | None):
    """The default of a dataclass field as a Python value, or its source text."""
    if value is None:
        return _MISSING
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
        for kw in value.keywords:
            if kw.arg == "default":
                return _default(kw.value)
            if kw.arg == "default_factory" and isinstance(kw.value, ast.Lambda):
                return _default(kw.value.body)
        return _MISSING
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError):
        return ast.unparse(value)


@functools.cache
def config_fields(class_path: str) -> dict[str, tuple[object, str]]:
    """{field name: (default, annotation text)} for 'module:Class', bases first."""
    module, name = class_path.split(":")
    found = _find_class(module, name)
    if found is None:
        raise RuntimeError(f"cannot find {class_path} in the installed packages")
    where, node = found
    fields: dict[str, tuple[object, str]] = {}
    for base in node.bases:
        base_name = getattr(base, "id", None)
        if base_name:
            fields.update(config_fields(f"{where}:{base_name}") if _find_class(where, base_name) else {})
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            default = _default(stmt.value)
            fields[stmt.target.id] = (None if default is _MISSING else default, ast.unparse(stmt.annotation))
    return fields


_SIMPLE_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
                 "list": (list,), "dict": (dict,), "None": (type(None),)}


def type_problem(annotation: str, value) -> str | None:
    """Why `value` does not fit a field annotated `annotation`, or None (also when unsure)."""
    names = [part.strip().split("[")[0] for part in annotation.split("|")]
    if any(n not in _SIMPLE_TYPES for n in names):
        return None  # an enum, a Literal or a class: TRL's own post-init checks it
    accepted = tuple(t for n in names for t in _SIMPLE_TYPES[n])
    if isinstance(value, bool) and bool not in accepted:
        return f"expected {annotation}, got {value!r}"
    if isinstance(value, accepted):
        return None
    return f"expected {annotation}, got {value!r}"
