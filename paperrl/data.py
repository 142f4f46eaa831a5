"""Datasets: the demo task, a hub id, or a local .jsonl/.json/.parquet/.csv file or directory.

Local files go through `datasets` (Arrow, memory-mapped), never through Python lists. Column
problems are found before any model is loaded, and reported with the columns that were found.
"""

from __future__ import annotations

import sys
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
    """The training dataset of a plan, with columns mapped and the paper's filters and prompt template applied.

    The recipe's column mapping and row filters apply wherever the dataset has the paper's columns: the
    paper's hub dataset, or a downloaded copy of it given as a local file."""
    if plan.dataset is None:
        raise PaperrlError(f"{plan.recipe.name}: the paper names no public dataset; pass --dataset "
                           "(a hub id or a local .jsonl/.json/.parquet/.csv file)")
    if plan.dataset.startswith("demo:"):
        return demo.dataset(plan.recipe.trainer, "train")
    recipe_ds = plan.recipe.dataset
    named = recipe_ds is not None and recipe_ds.name == plan.dataset
    split = plan.options.split or split or (recipe_ds.split if named else "train")
    path = Path(plan.dataset)
    try:
        if path.exists() or path.suffix in _FORMATS:
            if not path.exists():
                raise PaperrlError(f"--dataset {path}: no such file or directory")
            data = _load_local(path, split)
        else:
            from datasets import load_dataset

            subset = plan.options.subset or (recipe_ds.subset if named else None)
            data = load_dataset(plan.dataset, subset, split=split)
    except PaperrlError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken file or an unreachable hub is a user-facing problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PaperrlError(f"--dataset {plan.dataset}: cannot load ({exc.__class__.__name__}: {first[:300]})") from None
    user = {}
    for item in plan.options.columns:
        name, sep, column = item.partition("=")
        if not sep or not name or not column:
            raise PaperrlError(f"--column {item}: expected NAME=COLUMN, e.g. --column prompt=question")
        user[name] = column
    notes = []
    mapping = {}
    if recipe_ds:
        mapping = {name: column for name, column in recipe_ds.columns.items()
                   if name not in user and (named or column.split(".")[0] in data.column_names)}
        notes += [f"{name} <- {column}" for name, column in mapping.items() if name != column]
    data = _map_columns(data, {**mapping, **user}, plan.dataset)
    if recipe_ds:
        for column, allowed in recipe_ds.where.items():
            if column in data.column_names:
                before = len(data)
                data = data.filter(lambda value, allowed=set(allowed): value in allowed, input_columns=column)
                notes.append(f"kept {len(data)} of {before} rows with {column} in {allowed}")
        if recipe_ds.prompt_until and "prompt" not in data.column_names and {"chosen", "rejected"} <= set(data.column_names) \
                and isinstance(data[0]["chosen"], str):
            data = data.map(_split_prompt, fn_kwargs={"marker": recipe_ds.prompt_until})
            notes.append(f"prompt = chosen up to its last {recipe_ds.prompt_until!r}")
    template = plan.recipe.prompt_template
    if template is not None and template.value and "prompt" in data.column_names:
        if not isinstance(data[0]["prompt"], str):
            raise PaperrlError(f"--dataset {plan.dataset}: the recipe's prompt template wraps plain-text prompts; "
                               "the prompt column holds messages (set --set prompt_template=null to send them as they are)")
        data = data.map(lambda p: {"prompt": template.value.replace("{prompt}", p)}, input_columns="prompt")
        notes.append("prompts wrapped in the recipe's prompt template")
    _note(plan, notes)
    return data


def _note(plan, notes: list[str]) -> None:
    """What paperrl did to the user's data, said once in the run's log."""
    from paperrl.launch import in_distributed_worker

    if notes and not in_distributed_worker():
        print(f"paperrl: dataset {plan.dataset}: " + "; ".join(notes) + f" ({plan.recipe.name} recipe)", file=sys.stderr)


def _split_prompt(row, marker: str):
    """Anthropic HH's transcripts: the prompt is the text up to and including the last `marker`."""
    cut = row["chosen"].rfind(marker) + len(marker)
    prompt = row["chosen"][:cut]
    return {"prompt": prompt, "chosen": row["chosen"][cut:], "rejected": row["rejected"][len(prompt):]}


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


def prepare(data, plan, tokenizer):
    """The last steps that need the model's tokenizer: the paper's prompt cap, then the chat format."""
    recipe_ds = plan.recipe.dataset
    if recipe_ds and recipe_ds.max_prompt_tokens and not plan.dataset.startswith("demo:"):
        before = len(data)
        data = drop_long_prompts(data, tokenizer, recipe_ds.max_prompt_tokens)
        _note(plan, [f"dropped {before - len(data)} of {before} rows with prompts over {recipe_ds.max_prompt_tokens} tokens"])
    if not plan.kind.online:  # TRL's preference trainers refuse other columns (SimPO's UltraFeedback has `messages`)
        keep = next((set(option) for option in plan.kind.columns if set(option) <= set(data.column_names)), None)
        if keep:
            data = data.remove_columns([c for c in data.column_names if c not in keep])
    chat = plan.recipe.chat_template
    return as_chat(data, tokenizer, chat is None or bool(chat.value))


def drop_long_prompts(data, tokenizer, max_tokens: int | None):
    """Prompts longer than the paper's cap are dropped (TRL has no prompt cap any more)."""
    if not max_tokens or "prompt" not in data.column_names:
        return data

    def short(prompt):
        text = prompt if isinstance(prompt, str) else " ".join(m.get("content", "") for m in prompt)
        return len(tokenizer(text)["input_ids"]) <= max_tokens

    return data.filter(short, input_columns="prompt")


_ANSWERS = ("chosen", "rejected", "completion")


def as_chat(data, tokenizer, use_chat_template: bool):
    """Plain-text rows become turns where the model has a chat template (TRL then applies it): the prompt a
    user turn, chosen/rejected/completion assistant turns. Rows whose answers already hold the whole
    conversation are left to TRL, which takes the prompt out of them itself."""
    if not use_chat_template or not getattr(tokenizer, "chat_template", None) or "prompt" not in data.column_names:
        return data
    answers = [c for c in _ANSWERS if c in data.column_names]
    if not isinstance(data[0]["prompt"], str) or any(not isinstance(data[0][c], str) for c in answers):
        return data

    def turns(row):
        return {"prompt": [{"role": "user", "content": row["prompt"]}],
                **{c: [{"role": "assistant", "content": row[c]}] for c in answers}}

    return data.map(turns)
