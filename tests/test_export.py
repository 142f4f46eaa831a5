"""`--dry-run --format python`: a standalone plain-TRL script that trains exactly the resolved recipe.

The fidelity test runs both sides on a local model and a local dataset (`--model`, not the demo) and
compares what each trainer received: its class, its config, every row of its dataset, the first
batch, the reward functions' outputs, the callbacks and the LoRA adapter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import dry, run_cli
from paperrl import recipe as recipes
from paperrl.resolve import Options, resolve
from test_data import _model_with_chat_template  # the embedded model with a chat template

ALL = ["alphapo", "bema", "dapo", "dpo", "dr-grpo", "gspo", "lite-ppo", "rloo"]


@pytest.mark.parametrize("name", ALL)
def test_exported_script_trains_and_matches_the_dry_run(cache_dir, tmp_path, name):
    out = tmp_path / "run"
    args = (name, "--max-steps", "2", "--output-dir", out)
    result = run_cli(*args, "--dry-run", "--format", "python")
    assert result.returncode == 0, result.stderr[-2000:]
    code = result.stdout
    assert "paperrl" not in "\n".join(line for line in code.splitlines() if line.lstrip().startswith(("import", "from")))
    path = tmp_path / "train.py"
    path.write_text(code)
    namespace = {"__name__": "exported"}
    exec(compile(code, str(path), "exec", dont_inherit=True), namespace)  # top level only: config, rewards, data
    config_class = namespace[next(k for k in namespace if k.endswith("Config") and isinstance(namespace[k], type))]
    exported = json.loads(json.dumps(config_class(**namespace["CONFIG"]).to_dict(), default=str))
    assert exported == dry(*args)["config"]
    run = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "model" / "config.json").exists() or (out / "model" / "adapter_config.json").exists()


# ---------------------------------------------------------------- the same run, with --model


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _math_rows():
    rows = [{"problem": f"{a}+{b}=", "solution": str(a + b), "level": f"Level {1 + (a + b) % 5}"}
            for a in range(6) for b in range(6)]
    rows.append({"problem": "9" * 1100 + "+1=", "solution": "0", "level": "Level 5"})  # over the 1024-token cap
    return rows


def _cases(tmp_path):
    math = _jsonl(tmp_path / "math.jsonl", _math_rows())
    dapo = _jsonl(tmp_path / "dapo.jsonl", [{"prompt": f"{a}+{b}=", "reward_model": {"ground_truth": str(a + b)}}
                                           for a in range(8) for b in range(4)])
    plain = _jsonl(tmp_path / "plain.jsonl", [{"prompt": f"{a}+{b}=", "solution": str(a + b)} for a in range(8)
                                             for b in range(4)])
    from datasets import Dataset, DatasetDict

    sft = tmp_path / "sft"
    DatasetDict({split: Dataset.from_list([{"prompt": f"{a}+{b}=", "completion": str(a + b)} for a in range(n)
                                           for b in range(3)]) for split, n in (("train", 9), ("test", 4))}
                ).save_to_disk(str(sft))
    hh = _jsonl(tmp_path / "hh.jsonl", [{"chosen": f"\n\nHuman: {a}+1?\n\nAssistant: {a + 1}",
                                         "rejected": f"\n\nHuman: {a}+1?\n\nAssistant: {a + 2}"} for a in range(12)])
    small = ["--set", "batch.prompts_per_rollout=4", "--set", "batch.completions_per_prompt=4",
             "--set", "batch.completions_per_step=8"]  # a rollout that a few rows fill
    return {
        # the MATH level filter, the 1024-token prompt cap, raw-text prompts, the column map, LoRA
        "dr-grpo": ["--dataset", math, "--lora-r", "4", "--lora-alpha", "8", *small],
        # dynamic sampling, the exact normaliser, rewards with arguments, a nested column, a weighted --reward
        "dapo": ["--dataset", dapo, "--reward", "tests/rewards_for_tests.py:length_reward=0.5", *small],
        # a chat template applied to plain prompts
        "gspo": ["--dataset", plain, "--reward", "tests.rewards_for_tests:length_reward", *small],
        # a callback with its arguments, a saved dataset's split, LoRA
        "bema": ["--dataset", sft, "--split", "test", "--lora-r", "2"],
        # HH transcripts split into prompt/answers
        "dpo": ["--dataset", hh],
    }


def _same(a, b, what):
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and torch.equal(a, b), what
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (what, a.keys(), getattr(b, "keys", lambda: b)())
        for key in a:
            _same(a[key], b[key], f"{what}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), (what, len(a), b)
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{what}[{i}]")
    else:
        assert a == b, (what, a, b)


def _received(trainer) -> dict:
    """What a trainer was given, as a user would check it."""
    from paperrl.recipe import CALLBACKS

    data = trainer.train_dataset
    torch.manual_seed(0)
    batch = next(iter(trainer.get_train_dataloader()))
    out = {
        "class": [c.__name__ for c in type(trainer).__mro__[:3]],
        "config": trainer.args.to_dict(),
        "rows": len(data),
        "columns": data.column_names,
        "dataset": data.to_list(),
        "first_batch": batch,
        "callbacks": [(type(c).__name__, {k: v for k, v in vars(c).items() if not isinstance(v, dict)})
                      for c in trainer.callback_handler.callbacks
                      if type(c).__name__ in {t.split(":")[1] for t in CALLBACKS.values()}],
        "peft": trainer.model.peft_config["default"].to_dict() if hasattr(trainer.model, "peft_config") else None,
    }
    if hasattr(trainer, "reward_funcs"):
        rows = batch[:8]
        columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
        completions = ["7", " 12", "Answer: 5", "x" * 30, "", "3 apples", "10", "-1"][: len(rows)]
        out["reward_names"] = trainer.reward_func_names
        out["reward_weights"] = trainer.reward_weights
        out["reward_outputs"] = [f(prompts=[r["prompt"] for r in rows], completions=completions,
                                   completion_ids=[[1]] * len(rows), **columns) for f in trainer.reward_funcs]
    return out


@pytest.mark.parametrize("name", ["dr-grpo", "dapo", "gspo", "bema", "dpo"])
def test_exported_script_builds_the_same_trainer_as_paperrl(cache_dir, tmp_path, monkeypatch, name):
    from paperrl import builder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = _model_with_chat_template(tmp_path)
    args = [str(a) for a in _cases(tmp_path)[name]]
    out = tmp_path / "run"
    result = run_cli(name, "--model", model, "--output-dir", out, *args, "--dry-run", "--format", "python")
    assert result.returncode == 0, result.stderr[-2000:]
    namespace = {"__name__": "exported"}
    exec(compile(result.stdout, str(tmp_path / "train.py"), "exec", dont_inherit=True), namespace)
    theirs = _received(namespace["build_trainer"]())

    flags = dict(zip(args[::2], args[1::2]))
    opts = Options(model=str(model), output_dir=str(out), dataset=flags["--dataset"], split=flags.get("--split"),
                   sets=[v for k, v in zip(args[::2], args[1::2]) if k == "--set"],
                   rewards=[flags["--reward"]] if "--reward" in flags else [],
                   lora_r=int(flags["--lora-r"]) if "--lora-r" in flags else None,
                   lora_alpha=int(flags["--lora-alpha"]) if "--lora-alpha" in flags else None,
                   dora="--dora" in args)
    plan = resolve(recipes.load(name, opts.sets), opts)
    dataset, funcs = builder.load_inputs(plan)
    ours = _received(builder.build_trainer(plan, dataset, funcs))

    _same(ours, theirs, name)
    if name == "dr-grpo":  # the paper's filters did apply, to both
        kept = [r for r in _math_rows() if r["level"] in ("Level 3", "Level 4", "Level 5") and len(r["problem"]) < 1024]
        assert ours["rows"] == len(kept) and isinstance(ours["dataset"][0]["prompt"], str)
        assert ours["peft"]["r"] == 4 and ours["peft"]["lora_alpha"] == 8
    if name == "gspo":
        assert ours["dataset"][0]["prompt"] == [{"role": "user", "content": "0+0="}]
    if name == "bema":
        assert ours["rows"] == 12 and ours["callbacks"][0][0] == "BEMA" and ours["peft"]["r"] == 2
    if name == "dapo":
        assert ours["class"][0].startswith("DynamicSampling") and ours["reward_weights"].tolist()[-1] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(recipes.available()) - set(ALL)))
def test_every_other_recipe_exports_its_config_or_says_why_not(tmp_path, name):
    """Each recipe's script builds the dry run's exact config; a kind whose trainer needs what the script cannot
    build (a teacher, paperrl's reward-model subclass) refuses in one line instead of training something else."""
    args = (name, "--max-steps", "2", "--output-dir", tmp_path / "run")
    result = run_cli(*args, "--dry-run", "--format", "python")
    plan = resolve(recipes.load(name), Options(output_dir=str(tmp_path / "run")))
    reference_free = getattr(plan.recipe, "reference_free", None)
    if plan.kind.export_gap or (reference_free and reference_free.value):
        assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1
        assert result.stderr.startswith("error: --format python: the exported script cannot build ")
        return
    assert result.returncode == 0, result.stderr[-2000:]
    namespace = {"__name__": "exported"}
    exec(compile(result.stdout, str(tmp_path / "train.py"), "exec", dont_inherit=True), namespace)
    config_class = namespace[next(k for k in namespace if k.endswith("Config") and isinstance(namespace[k], type))]
    exported = json.loads(json.dumps(config_class(**namespace["CONFIG"]).to_dict(), default=str))
    assert exported == dry(*args)["config"]
