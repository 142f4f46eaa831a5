"""The paper's batch is kept on 1, 2, 8 and 64 processes; impossible splits are errors, never rounding."""

from __future__ import annotations

import pytest

from conftest import assert_user_error
from paperrl import recipe as recipes
from paperrl.batch import PaperBatch, derive
from paperrl.errors import PaperrlError
from paperrl.resolve import Options, build_config, resolve

# (recipe, prompts per rollout, completions per prompt, completions per optimizer step) from the papers
PAPER = {"dapo": (512, 16, 512), "dr-grpo": (128, 8, 128), "lite-ppo": (128, 8, 1024)}


@pytest.mark.parametrize("name", sorted(PAPER))
@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_paper_batch_on_any_process_count(name, n):
    prompts, group, per_step = PAPER[name]
    plan = resolve(recipes.load(name), Options(model="m", output_dir="/tmp/x", num_processes=n))
    c = build_config(plan)
    b, ga, spg = c.per_device_train_batch_size, c.gradient_accumulation_steps, c.steps_per_generation
    assert c.num_generations == group
    assert b * n * ga == per_step  # completions per optimizer step
    assert b * n * spg == prompts * group  # completions per rollout
    assert spg // ga == prompts * group // per_step  # updates per rollout
    assert b <= 8


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_gspo_keeps_four_minibatches_per_rollout(n):
    c = build_config(resolve(recipes.load("gspo"), Options(model="m", output_dir="/tmp/x", num_processes=n)))
    assert c.steps_per_generation == 4 * c.gradient_accumulation_steps


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_rloo_batch(n):
    c = build_config(resolve(recipes.load("rloo"), Options(model="m", output_dir="/tmp/x", num_processes=n)))
    assert c.per_device_train_batch_size * n * c.gradient_accumulation_steps == 512
    assert c.steps_per_generation == 2 * c.gradient_accumulation_steps


def test_user_micro_batch_changes_accumulation_not_the_batch():
    plan = resolve(recipes.load("dapo"), Options(model="m", output_dir="/tmp/x", num_processes=8,
                                                 per_device_batch_size=2))
    assert plan.config["per_device_train_batch_size"] == 2
    assert plan.config["gradient_accumulation_steps"] == 32  # 2 x 8 x 32 = 512
    assert plan.config["steps_per_generation"] == 512  # 16 updates per rollout


def test_indivisible_process_count_names_valid_choices():
    with pytest.raises(PaperrlError, match="nearest valid process counts: 2 or 4"):
        derive(PaperBatch(completions_per_prompt=8, per_step=128, prompts_per_rollout=128), 3, {})


def test_indivisible_micro_batch_names_valid_choices(cli):
    result = cli("dapo", "--model", "m", "--dry-run", "--per-device-batch-size", "5")
    assert_user_error(result, "per-device batch size 5", "nearest valid per-device sizes: 4 or 8")


def test_rollout_not_whole_minibatches():
    with pytest.raises(PaperrlError, match="not a whole number of mini-batches"):
        PaperBatch(prompts_per_rollout=10, completions_per_prompt=3, per_step=16).steps()


def test_dry_run_batch_block_for_two_processes(cli):
    import json

    out = json.loads(cli("dapo", "--model", "m", "--num-processes", "2", "--dry-run", "--format", "json").stdout)
    assert out["batch"]["num_processes"] == 2
    assert out["batch"]["completions_per_step"] == 512 and out["batch"]["prompts_per_rollout"] == 512
    assert out["launch"]["num_processes"] == 2
    assert out["launch"]["command"].startswith("accelerate launch --num_processes 2")
