"""A user's model and dataset: every local format, column checks and mapping, the same loading code as the hub."""

from __future__ import annotations

import json

import pytest

from conftest import assert_user_error, metrics
from paperrl import demo

# GSPO with the user's model: paper values, shrunk only where a CPU test must be quick.
SMALL = ["--max-steps", "2", "--set", "max_completion_length=4", "--set", "per_device_train_batch_size=8",
         "--set", "num_generations=4"]


def _rows(n=24):
    return [{"question": f"{a}+{b}=", "answer": str(a + b)} for a, b in zip(range(n), range(n, 2 * n))]


def _write(path, rows, fmt):
    import pandas as pd

    df = pd.DataFrame(rows)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        df.to_parquet(path)
    elif fmt == "csv":
        df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_user_model_and_local_dataset_formats(cli, tmp_path, fmt):
    data = _write(tmp_path / f"train.{fmt}", _rows(), fmt)
    out = tmp_path / "run"
    result = cli("gspo", "--model", demo.model_dir(), "--dataset", data, "--column", "prompt=question",
                 "--column", "solution=answer", "--reward", "tests/rewards_for_tests.py:length_reward",
                 "--output-dir", out, *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = metrics(out)
    assert any("rewards/accuracy/mean" in r for r in rows) and any("rewards/length_reward/mean" in r for r in rows)
    record = json.loads((out / "paperrl.json").read_text())
    assert record["model"] == str(demo.model_dir()) and record["config"]["learning_rate"] == 1e-6  # TRL default: paper mode


def test_directory_of_files(cli, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    _write(folder / "a.jsonl", _rows(12), "jsonl")
    _write(folder / "b.jsonl", _rows(12), "jsonl")
    result = cli("gspo", "--model", demo.model_dir(), "--dataset", folder, "--column", "prompt=question",
                 "--column", "solution=answer", "--output-dir", tmp_path / "run", *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]


def test_missing_column_names_found_and_needed(cli, tmp_path):
    data = _write(tmp_path / "train.jsonl", _rows(), "jsonl")
    result = cli("gspo", "--model", demo.model_dir(), "--dataset", data, "--output-dir", tmp_path / "run", *SMALL)
    assert_user_error(result, "the grpo trainer needs the columns prompt; found: answer, question",
                      "reward 'accuracy' reads the column 'solution'", "--column")
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_preference_columns(cli, tmp_path):
    data = _write(tmp_path / "pairs.jsonl", [{"prompt": "1+1=", "good": "2"}], "jsonl")
    result = cli("dpo", "--model", demo.model_dir(), "--dataset", data, "--output-dir", tmp_path / "run")
    assert_user_error(result, "the dpo trainer needs the columns prompt/chosen/rejected or chosen/rejected",
                      "found: good, prompt")


def test_nested_column_mapping(tmp_path, cache_dir):
    from paperrl import data as datamod, recipe as recipes
    from paperrl.resolve import Options, resolve

    path = tmp_path / "dapo.jsonl"
    path.write_text(json.dumps({"prompt": "1+1=", "reward_model": {"ground_truth": "2"}}) + "\n")
    plan = resolve(recipes.load("dapo"), Options(model="m", dataset=str(path), columns=["solution=reward_model.ground_truth"]))
    ds = datamod.load(plan)
    assert ds[0]["solution"] == "2"


def test_bad_dataset_path_and_type(cli, tmp_path):
    assert_user_error(cli("gspo", "--dataset", tmp_path / "none.jsonl", "--output-dir", tmp_path / "r"),
                      "no such file or directory")
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    assert_user_error(cli("gspo", "--dataset", odd, "--output-dir", tmp_path / "r"), "unsupported file type '.txt'")


def test_paper_dataset_is_named_with_model(cli):
    import json as _json

    out = _json.loads(cli("dr-grpo", "--model", "m", "--dry-run", "--format", "json").stdout)
    assert out["dataset"] == "DigitalLearningGmbH/MATH-lighteval"


def test_recipe_without_public_dataset_asks_for_one(cli, tmp_path):
    result = cli("gspo", "--model", demo.model_dir(), "--output-dir", tmp_path / "r")
    assert_user_error(result, "the paper names no public dataset; pass --dataset")


def test_lora_trains_and_saves_an_adapter(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("dpo", "--max-steps", "2", "--lora-r", "4", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model" / "adapter_config.json").exists()


def _model_with_chat_template(tmp_path):
    import shutil

    from transformers import AutoTokenizer

    target = tmp_path / "chat-model"
    shutil.copytree(demo.model_dir(), target)
    tok = AutoTokenizer.from_pretrained(target)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok.save_pretrained(target)
    return target


@pytest.mark.parametrize("recipe,conversational", [("gspo", True), ("dr-grpo", False)])
def test_chat_template_where_the_model_has_one(cache_dir, tmp_path, recipe, conversational):
    from paperrl import data as datamod, recipe as recipes, rewards
    from paperrl.resolve import Options, resolve
    from paperrl.train import build_trainer

    data = _write(tmp_path / "train.jsonl", _rows(), "jsonl")
    plan = resolve(recipes.load(recipe, ["max_completion_length=4", "num_generations=4", "per_device_train_batch_size=8"]),
                   Options(model=str(_model_with_chat_template(tmp_path)), dataset=str(data), output_dir="/tmp/x",
                           columns=["prompt=question", "solution=answer"]))
    funcs, _ = rewards.build(plan.rewards)
    trainer = build_trainer(plan, datamod.load(plan), funcs)
    prompt = trainer.train_dataset[0]["prompt"]
    assert isinstance(prompt, list) == conversational  # Dr. GRPO keeps raw text, as the paper does
