"""Datasets: the demo task, a hub id, or a local .jsonl/.json/.parquet/.csv file or directory.

Local files go through `datasets` (Arrow, memory-mapped), never through Python lists. Column
problems are found before any model is loaded, and reported with the columns that were found.
"""

from __future__ import annotations

from pathlib import Path

from paperrl import demo
from paperrl.errors import PaperrlError

_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _load_local(path: Path, split: str):
    from datasets import load_dataset, load_from_disk

    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            data = load_from_disk(str(path))
            return data[split] if hasattr(data, "keys") and split in data else data
        files = sorted(p for p in path.iterdir() if p.suffix in _FORMATS)
        if not files:
            raise PaperrlError(f"--dataset {path}: the directory holds no .jsonl/.json/.parquet/.csv file")
        kinds = {_FORMATS[p.suffix] for p in files}
        if len(kinds) > 1:
            raise PaperrlError(f"--dataset {path}: mixed file formats ({', '.join(sorted(kinds))}); keep one")
        return load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train")
    if path.suffix not in _FORMATS:
        raise PaperrlError(f"--dataset {path}: unsupported file type '{path.suffix}'; accepted: "
                           ".jsonl, .json, .parquet, .csv, or a directory of them")
    return load_dataset(_FORMATS[path.suffix], data_files=str(path), split="train")


def load(plan, split: str | None = None):
    """The training dataset of a plan, with columns mapped and filters applied."""
    if plan.dataset is None:
        raise PaperrlError(f"{plan.recipe.name}: the paper names no public dataset; pass --dataset "
                           "(a hub id or a local .jsonl/.json/.parquet/.csv file)")
    if plan.dataset.startswith("demo:"):
        return demo.dataset(plan.recipe.trainer, "train")
    recipe_ds = plan.recipe.dataset if plan.recipe.dataset and plan.recipe.dataset.name == plan.dataset else None
    split = plan.options.split or split or (recipe_ds.split if recipe_ds else "train")
    path = Path(plan.dataset)
    try:
        if path.exists() or path.suffix in _FORMATS:
            if not path.exists():
                raise PaperrlError(f"--dataset {path}: no such file or directory")
            data = _load_local(path, split)
        else:
            from datasets import load_dataset

            subset = plan.options.subset or (recipe_ds.subset if recipe_ds else None)
            data = load_dataset(plan.dataset, subset, split=split)
    except PaperrlError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken file or an unreachable hub is a user-facing problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PaperrlError(f"--dataset {plan.dataset}: cannot load ({exc.__class__.__name__}: {first[:300]})") from None
    mapping = dict(recipe_ds.columns) if recipe_ds else {}
    for item in plan.options.columns:
        name, sep, column = item.partition("=")
        if not sep or not name or not column:
            raise PaperrlError(f"--column {item}: expected NAME=COLUMN, e.g. --column prompt=question")
        mapping[name] = column
    data = _map_columns(data, mapping, plan.dataset)
    if recipe_ds and recipe_ds.where:
        for column, allowed in recipe_ds.where.items():
            if column in data.column_names:
                data = data.filter(lambda value, allowed=set(allowed): value in allowed, input_columns=column)
    return data


def _map_columns(data, mapping: dict, where: str):
    """Rename (or, for 'a.b', extract nested) columns so the trainer finds its names."""
    for name, column in mapping.items():
        top = column.split(".")[0]
        if top not in data.column_names:
            raise PaperrlError(f"--dataset {where}: column '{top}' (mapped to {name}) not found; "
                               f"found: {', '.join(data.column_names)}")
        if "." in column:
            keys = column.split(".")[1:]

            def extract(value, keys=keys):
                for key in keys:
                    value = value[key] if isinstance(value, dict) else None
                return {name: value}

            data = data.map(extract, input_columns=top)
        elif name != column:
            if name in data.column_names:
                data = data.remove_columns(name)
            data = data.rename_column(column, name)
    return data


def check_columns(data, kind, reward_needs: dict, where: str) -> list[str]:
    """Problems with the dataset's columns for this trainer and these rewards, all at once."""
    found = set(data.column_names)
    problems = []
    if not any(set(option) <= found for option in kind.columns):
        wanted = " or ".join("/".join(option) for option in kind.columns)
        problems.append(f"--dataset {where}: the {kind.name} trainer needs the columns {wanted}; found: "
                        f"{', '.join(sorted(found)) or 'none'}; map them with --column NAME=COLUMN")
    for reward, columns in reward_needs.items():
        for column in columns:
            if column not in found:
                problems.append(f"--dataset {where}: reward '{reward}' reads the column '{column}', which is "
                                f"missing; found: {', '.join(sorted(found)) or 'none'}; map one with "
                                f"--column {column}=COLUMN")
    if len(data) == 0:
        problems.append(f"--dataset {where}: no rows")
    return problems


def drop_long_prompts(data, tokenizer, max_tokens: int | None):
    """Dr. GRPO caps prompts at 1024 tokens; TRL has no prompt cap any more, so filter the data."""
    if not max_tokens or "prompt" not in data.column_names:
        return data

    def short(prompt):
        text = prompt if isinstance(prompt, str) else " ".join(m.get("content", "") for m in prompt)
        return len(tokenizer(text)["input_ids"]) <= max_tokens

    return data.filter(short, input_columns="prompt")


def as_chat(data, tokenizer, use_chat_template: bool):
    """Plain-text prompts become a user turn where the model has a chat template (TRL then applies it)."""
    if not use_chat_template or not getattr(tokenizer, "chat_template", None) or "prompt" not in data.column_names:
        return data
    if not isinstance(data[0]["prompt"], str):
        return data  # already conversational
    return data.map(lambda p: {"prompt": [{"role": "user", "content": p}]}, input_columns="prompt")
