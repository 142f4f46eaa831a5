"""Definitions read from installed source without importing it: TRL's config fields and defaults,
the values TRL's code compares a field with, and the parameters of a function or class.

`paperrl list/show/diff/cp` must start in well under a second, and importing trl costs ~3 s.
A TRL config is a dataclass: its fields and defaults are plain assignments in the class body,
so parsing the source files of the class and its bases (TrainingArguments included) gives the
same names and defaults that `dataclasses.fields()` would, for the TRL that is installed
(tests/contract/test_trl_internals.py checks that they are equal).
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


def _find_class(module: str, name: str, depth: int = 0) -> tuple[str, ast.ClassDef | ast.FunctionDef] | None:
    """The class (or function) `name` as seen from `module`, following imports."""
    path = _module_file(module)
    if path is None or depth > 4:
        return None
    tree = _parse(path)
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
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


_FACTORIES = {"list": list, "dict": dict, "set": set, "tuple": tuple}


def _default(value: ast.expr | None, names: dict[str, ast.expr]):
    """The default of a dataclass field as a Python value, or its source text.

    `names`: the class body's own assignments, for a default that names one (`default=default_optim`);
    where the body assigns it more than once (under a version check), the last assignment wins."""
    if value is None:
        return _MISSING
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
        for kw in value.keywords:
            if kw.arg == "default":
                return _default(kw.value, names)
            if kw.arg == "default_factory" and isinstance(kw.value, ast.Lambda):
                return _default(kw.value.body, names)
            if kw.arg == "default_factory" and getattr(kw.value, "id", None) in _FACTORIES:
                return _FACTORIES[kw.value.id]()
        return _MISSING
    if isinstance(value, ast.Name) and value.id in names:
        return _default(names[value.id], {})
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError):
        return ast.unparse(value)


def _assignments(node: ast.ClassDef) -> dict[str, ast.expr]:
    """Plain `name = value` statements of a class body, nested ones (under an `if`) included."""
    out = {}
    for stmt in ast.walk(node):
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            out[stmt.targets[0].id] = stmt.value
    return out


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
    names = _assignments(node)
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            default = _default(stmt.value, names)
            fields[stmt.target.id] = (None if default is _MISSING else default, ast.unparse(stmt.annotation))
    return fields


def _strings(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [v for e in node.elts for v in _strings(e)]
    return []


@functools.cache
def compared_values(modules: tuple[str, ...], field: str) -> tuple[str, ...]:
    """The strings the code of `modules` compares `field` with (`self.loss_type == "dapo"`,
    `args.loss_type in ["bnpo", ...]`): the values a TRL string field really accepts."""
    found = []
    for module in modules:
        path = _module_file(module)
        for node in ast.walk(_parse(path)) if path else ():
            left = getattr(node, "left", None)
            if (isinstance(node, ast.Compare) and (getattr(left, "attr", None) or getattr(left, "id", None)) == field
                    and all(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops)):
                found += [v for c in node.comparators for v in _strings(c)]
    return tuple(dict.fromkeys(found))


@functools.cache
def reward_arguments(trainer_class: str) -> tuple[str, ...]:
    """What TRL's `_calculate_rewards` passes to every reward function besides the dataset's columns:
    the keywords of its `reward_func(...)` call and the keys it adds to `reward_kwargs`."""
    module, name = trainer_class.split(":")
    found = _find_class(module, name)
    method = next((s for s in found[1].body if isinstance(s, ast.FunctionDef) and s.name == "_calculate_rewards"),
                  None) if found else None
    names = []
    for node in ast.walk(method) if method else ():
        if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and isinstance(node.slice, ast.Constant)
                and getattr(node.value, "id", None) == "reward_kwargs"):
            names.append(node.slice.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "reward_func":
            names += [k.arg for k in node.keywords if k.arg]
    return tuple(dict.fromkeys(names))


def parameters(target: str) -> tuple[dict[str, tuple[bool, str | None]], bool]:
    """({name: (required, annotation text)}, accepts **kwargs) of 'module:function' or 'module:Class' (its __init__)."""
    module, name = target.split(":")
    found = _find_class(module, name)
    if found is None:
        raise RuntimeError(f"cannot find {target} in the installed packages")
    node = found[1]
    if isinstance(node, ast.ClassDef):
        node = next(s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__")
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required = len(positional) - len(args.defaults)
    def note(a):
        return ast.unparse(a.annotation) if a.annotation is not None else None

    params = {a.arg: (i < required, note(a)) for i, a in enumerate(positional) if a.arg not in ("self", "cls")}
    params.update({a.arg: (d is None, note(a)) for a, d in zip(args.kwonlyargs, args.kw_defaults)})
    return params, args.kwarg is not None


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
