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
    from paperrl.builder import build_trainer

    data = _write(tmp_path / "train.jsonl", _rows(), "jsonl")
    plan = resolve(recipes.load(recipe, ["max_completion_length=4", "num_generations=4", "per_device_train_batch_size=8"]),
                   Options(model=str(_model_with_chat_template(tmp_path)), dataset=str(data), output_dir="/tmp/x",
                           columns=["prompt=question", "solution=answer"]))
    funcs, _ = rewards.build(plan.rewards)
    trainer = build_trainer(plan, datamod.load(plan), funcs)
    prompt = trainer.train_dataset[0]["prompt"]
    assert isinstance(prompt, list) == conversational  # Dr. GRPO keeps raw text, as the paper does


# ---------------------------------------------------------------- the papers' public datasets, as published

# One or two rows per dataset, in its real columns and nesting (checked against the dataset cards).
def _dapo_math_rows():
    from test_rewards import dapo_math_row

    return [dapo_math_row(f"What is {a} + {b}?", str(a + b), i) for i, (a, b) in enumerate([(2, 3), (4, 4), (1, 6), (5, 2)])]


def _math_lighteval_rows():
    return [{"problem": f"Compute ${a} + {b}$.", "level": f"Level {lvl}", "type": "Algebra",
             "solution": f"We add: ${a} + {b} = \\boxed{{{a + b}}}$."} for a, b, lvl in
            [(1, 2, 1), (3, 4, 3), (5, 6, 4), (7, 8, 5), (2, 2, 5), (9, 9, 2)]]


def _hh_rlhf_rows():  # Anthropic/hh-rlhf: whole transcripts, no prompt column
    head = "\n\nHuman: What is 2 + 2?\n\nAssistant: 4.\n\nHuman: And 3 + 3?\n\nAssistant:"
    return [{"chosen": head + " It is 6.", "rejected": head + " It is 7, I think."}] * 4


def _tldr_rows():  # trl-lib/tldr
    return [{"prompt": f"SUBREDDIT: r/test\n\nTITLE: Post {i}\n\nPOST: I added {i} and {i} and got a number.\n\nTL;DR:",
             "completion": f" {i} + {i} = {2 * i}"} for i in range(4)]


def _simpo_ultrafeedback_rows():  # princeton-nlp/mistral-instruct-ultrafeedback: chosen/rejected hold the whole chat
    def chat(q, a):
        return [{"content": q, "role": "user"}, {"content": a, "role": "assistant"}]

    return [{"prompt_id": f"{i:064x}", "prompt": f"What is {i} + 1?", "chosen": chat(f"What is {i} + 1?", str(i + 1)),
             "rejected": chat(f"What is {i} + 1?", str(i + 2)), "messages": chat(f"What is {i} + 1?", str(i + 1)),
             "score_chosen": 0.9, "score_rejected": 0.1} for i in range(4)]


def _tulu3_rows():  # allenai/tulu-3-sft-mixture
    return [{"id": f"row-{i}", "source": "ai2-adapt-dev/test",
             "messages": [{"role": "user", "content": f"What is {i} + 1?"},
                          {"role": "assistant", "content": str(i + 1)}]} for i in range(4)]


PAPER_DATASETS = {
    "dapo": (_dapo_math_rows, ["--reward", "tests/rewards_for_tests.py:length_reward",
                               "--set", "dynamic_sampling.metric=reward", "--set", "max_completion_length=8",
                               "--set", "rewards.soft_overlong_punishment.soft_punish_cache=2"]),
    "dr-grpo": (_math_lighteval_rows, ["--set", "max_completion_length=8"]),
    "rloo": (_tldr_rows, ["--reward", "tests/rewards_for_tests.py:length_reward", "--set", "max_completion_length=8"]),
    "dpo": (_hh_rlhf_rows, ["--set", "max_length=96"]),
    "alphapo": (_simpo_ultrafeedback_rows, ["--set", "max_length=64"]),
    "bema": (_tulu3_rows, ["--set", "max_length=64", "--set", "callbacks.bema.update_freq=1"]),
}
_SMALL_BATCH = {"grpo": ["--set", "batch.prompts_per_rollout=2", "--set", "batch.completions_per_prompt=2",
                         "--set", "batch.completions_per_step=4"],
                "rloo": ["--set", "batch.completions_per_prompt=2", "--set", "batch.completions_per_step=4"]}


@pytest.fixture(scope="module")
def instruct_model(tmp_path_factory):
    """A local model directory as a real instruct model has it: a BPE tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    target = tmp_path_factory.mktemp("instruct-model")
    corpus = [json.dumps(row) for rows, _ in PAPER_DATASETS.values() for row in rows()]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
                         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    tok.save_pretrained(target)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(target)
    return target


def _paper_data_file(tmp_path, recipe):
    import pandas as pd

    rows, _ = PAPER_DATASETS[recipe]
    path = tmp_path / f"{recipe}-data.parquet"
    pd.DataFrame(rows()).to_parquet(path)
    return path


@pytest.mark.parametrize("recipe", list(PAPER_DATASETS))
def test_recipe_trains_on_its_papers_dataset_schema(cli, tmp_path, instruct_model, recipe):
    """A downloaded copy of the paper's dataset, given as --dataset FILE without --column: one step."""
    from paperrl import recipe as recipes

    kind = recipes.load(recipe).trainer
    small = _SMALL_BATCH.get(kind, ["--set", "batch.examples_per_step=2"])
    out = tmp_path / "run"
    result = cli(recipe, "--model", instruct_model, "--dataset", _paper_data_file(tmp_path, recipe), "--max-steps", "1",
                 "--output-dir", out, "--set", "warmup_steps=0", *small, *PAPER_DATASETS[recipe][1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics(out)[-1]["step"] == 1


def test_paper_columns_filters_and_template_are_applied_and_said(tmp_path, instruct_model, capsys):
    """Dr. GRPO on a local MATH-lighteval copy: the recipe's mapping, level filter, prompt cap and template."""
    from paperrl import data as datamod, recipe as recipes, rewards
    from paperrl.resolve import Options, resolve
    from paperrl.builder import build_trainer

    plan = resolve(recipes.load("dr-grpo", ["max_completion_length=8", "batch.prompts_per_rollout=2",
                                            "batch.completions_per_prompt=2", "batch.completions_per_step=4"]),
                   Options(model=str(instruct_model), dataset=str(_paper_data_file(tmp_path, "dr-grpo")),
                           output_dir=str(tmp_path / "run")))
    funcs, _ = rewards.build(plan.rewards)
    trainer = build_trainer(plan, datamod.load(plan), funcs)
    data = trainer.train_dataset
    assert len(data) == 4  # levels 3-5 of the 6 rows
    assert data[0]["prompt"] == ("<|im_start|>system\nPlease reason step by step, and put your final answer within "
                                 "\\boxed{}.<|im_end|>\n<|im_start|>user\nCompute $3 + 4$.<|im_end|>\n"
                                 "<|im_start|>assistant\n")  # raw text, not the model's chat template
    assert data[0]["solution"].endswith("\\boxed{7}$.")
    log = capsys.readouterr().err
    assert "kept 4 of 6 rows with level in ['Level 3', 'Level 4', 'Level 5']" in log
    assert "prompts wrapped in the recipe's prompt template" in log and "dropped 0 of 4 rows with prompts over 1024" in log


def test_paper_preference_rows_are_split_as_the_authors_do(tmp_path, instruct_model, capsys):
    from paperrl import data as datamod, recipe as recipes
    from paperrl.resolve import Options, resolve
    from paperrl.builder import build_trainer

    def prepared(recipe):
        plan = resolve(recipes.load(recipe, ["max_length=64", "batch.examples_per_step=2"]),
                       Options(model=str(instruct_model), dataset=str(_paper_data_file(tmp_path, recipe)),
                               output_dir=str(tmp_path / recipe)))
        return build_trainer(plan, datamod.load(plan), [])

    # DPO's authors (preference_datasets.py): the prompt is the HH transcript up to its last "\n\nAssistant:"
    dpo = prepared("dpo")
    tok = dpo.processing_class
    row = dpo.train_dataset[0]
    assert tok.decode(row["prompt_ids"] if "prompt_ids" in row else row["prompt_input_ids"]).endswith(
        "And 3 + 3?\n\nAssistant:")
    assert "prompt = chosen up to its last '\\n\\nAssistant:'" in capsys.readouterr().err  # said in the run's log
    # SimPO's UltraFeedback rows: chosen/rejected hold the whole chat; the user turn is the prompt, once
    alphapo = prepared("alphapo")
    tok = alphapo.processing_class
    row = alphapo.train_dataset[0]
    chosen = tok.decode(row["chosen_input_ids"])
    assert chosen.count("What is 0 + 1?") == 1, chosen
