"""Every recipe validates and builds its real TRL config; the dry run holds the papers' values."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import dry
from paperrl import recipe as recipes
from paperrl.resolve import Options, build_config, resolve

ALL = sorted(recipes.available())
FIRST = ["2-grpo", "alphapo", "apo-down", "apo-zero", "bema", "cpo", "dapo", "discopop", "dpo", "dr-grpo", "exo", "f-dpo",
         "grpo", "gspo", "ipo", "ld-dpo", "lite-ppo", "luspo", "nca", "rloo", "robust-dpo", "rpo", "sapo", "scalerl",
         "simpo", "tulu3-dpo", "wpo"]
CONTRACT_KEYS = {"recipe", "trainer", "paper", "model", "dataset", "config", "origin", "sources", "rewards",
                 "callbacks", "dynamic_sampling", "batch", "launch"}


def test_all_recipes_are_discovered_in_their_family_folder():
    assert set(FIRST) <= set(ALL)
    for name, path in recipes.available().items():
        assert path.parent.parent == recipes.RECIPE_DIR, name


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("model", [None, "some-org/some-model"])
def test_recipe_builds_real_trl_config(name, model):
    plan = resolve(recipes.load(name), Options(model=model, output_dir="/tmp/unused"))
    config = build_config(plan)
    assert type(config).__name__ == plan.kind.config_class.split(":")[1]
    assert config.bf16 is False and config.use_cpu is True  # CPU: precision from the hardware
    fields = {f.name for f in dataclasses.fields(config)}
    assert set(plan.config) <= fields
    for name_, value in plan.config.items():
        if name_ != "loss_type":  # CPO rewrites alphapo -> simpo, checked below
            assert getattr(config, name_) == value, name_


@pytest.mark.parametrize("name", ALL)
def test_every_value_has_a_source_and_origin(name):
    out = dry(name, "--model", "m")
    assert set(out) == CONTRACT_KEYS
    for field, origin in out["origin"].items():
        assert origin in {"paper", "authors", "trl-index", "peer", "paperrl", "derived", "user", "trl-default"}
        assert out["sources"][field], field
    assert "demo" not in out["origin"].values()  # with --model: the paper's values
    for field in ("learning_rate", "lr_scheduler_type", "num_train_epochs"):  # what matters is stated, or a gap
        assert field in out["origin"], field


def test_gspo_paper_values():
    out = dry("gspo", "--model", "m")
    c = out["config"]
    assert (c["importance_sampling_level"], c["loss_type"], c["beta"]) == ("sequence", "grpo", 0.0)
    assert (c["epsilon"], c["epsilon_high"]) == (3e-4, 4e-4)
    assert c["steps_per_generation"] == 4 * c["gradient_accumulation_steps"]
    assert out["batch"]["steps_per_rollout"] == 4
    assert out["origin"]["steps_per_generation"] == "derived"
    # beta 0 is an author's suggestion in a verl pull request, not the paper's setting
    assert out["origin"]["beta"] == "peer" and "PR 2775" in out["sources"]["beta"]
    assert out["origin"]["learning_rate"] == "trl-default" and "not given by the paper" in out["sources"]["learning_rate"]
    assert out["sources"]["lr_scheduler_type"].startswith("gap:")  # no source in the recipe: shown as a gap


def test_dapo_paper_values():
    out = dry("dapo", "--model", "m")
    c = out["config"]
    assert (c["epsilon"], c["epsilon_high"], c["loss_type"], c["beta"]) == (0.2, 0.28, "dapo", 0.0)
    assert c["mask_truncated_completions"] is True
    assert c["max_completion_length"] == 20480
    assert out["batch"] == {"prompts_per_rollout": 512, "completions_per_prompt": 16, "completions_per_step": 512,
                            "steps_per_rollout": 16, "num_processes": 1,
                            "paper": {"prompts_per_rollout": 512, "completions_per_prompt": 16,
                                      "completions_per_step": 512}}
    rewards = {r["name"]: r for r in out["rewards"]}
    assert rewards["dapo_accuracy"]["args"] == {"correct": 1.0, "wrong": -1.0}  # verl math_dapo.py's verifier
    assert rewards["soft_overlong_punishment"]["args"] == {"max_completion_len": 20480, "soft_punish_cache": 4096}
    ds = out["dynamic_sampling"]
    assert ds["enabled"] and ds["metric"] == "dapo_accuracy" and ds["max_rounds"] == 10 and ds["oversample"] == 3.0
    assert "§3.2" in out["sources"]["dynamic_sampling.enabled"]
    assert out["dataset"] == "BytedTsinghua-SIA/DAPO-Math-17k"
    # the paper's overlong filtering stays, with the authors' best run (without it) beside it
    assert c["mask_truncated_completions"] is True and out["origin"]["mask_truncated_completions"] == "paper"
    assert "authors' code: False" in out["sources"]["mask_truncated_completions"]
    assert (c["lr_scheduler_type"], c["warmup_steps"]) == ("constant_with_warmup", 320)
    assert "authors' code: 160" in out["sources"]["warmup_steps"]
    assert (c["weight_decay"], out["origin"]["weight_decay"]) == (0.1, "authors")
    assert (c["temperature"], out["origin"]["temperature"]) == (1.0, "authors")  # §4.1's 1.0/0.7 is evaluation
    origin = out["origin"]
    assert (origin["dynamic_sampling.enabled"], origin["dynamic_sampling.max_rounds"],
            origin["dynamic_sampling.oversample"], origin["dynamic_sampling.on_exhausted"]) == \
        ("paper", "authors", "authors", "paperrl")


def test_dr_grpo_paper_values():
    out = dry("dr-grpo", "--model", "m")
    c = out["config"]
    assert (c["loss_type"], c["scale_rewards"], c["beta"]) == ("dr_grpo", "none", 0.0)
    assert (c["num_generations"], c["max_completion_length"], c["learning_rate"]) == (8, 3000, 1e-6)
    assert (c["lr_scheduler_type"], c["warmup_steps"], c["adam_beta2"]) == ("constant", 0, 0.95)  # oat's Adam
    assert out["batch"]["prompts_per_rollout"] == 128 and out["batch"]["completions_per_step"] == 128
    assert "max_prompt_length" not in c  # removed from TRL; the cap is applied to the data
    assert out["origin"]["learning_rate"] == "authors" and out["origin"]["scale_rewards"] == "paper"
    assert out["origin"]["prompt_template"] == "authors"
    assert out["sources"]["prompt_template"].startswith("'<|im_start|>system\\nPlease reason step by step")
    (reward,) = out["rewards"]
    assert reward["args"] == {"truncated": 0.0, "max_completion_len": 3000}  # truncated answers score 0


def test_lite_ppo_paper_values():
    out = dry("lite-ppo", "--model", "m")
    c = out["config"]
    assert (c["scale_rewards"], c["loss_type"], c["beta"]) == ("batch", "dapo", 0.0)
    assert (c["top_p"], c["top_k"], c["temperature"], c["num_iterations"]) == (0.99, 100, 0.99, 1)
    assert c["num_generations"] == 8
    # rollout of 128 prompts x 8 = 1024, one update of 1024 (the Paper Index's 4 x 32 is per GPU)
    assert out["batch"]["prompts_per_rollout"] == 128 and out["batch"]["completions_per_step"] == 1024
    assert out["batch"]["steps_per_rollout"] == 1
    assert (c["max_completion_length"], c["learning_rate"]) == (8192, 1e-6)


def test_dpo_paper_values():
    out = dry("dpo", "--model", "m")
    c = out["config"]
    assert (c["loss_type"], c["beta"], c["learning_rate"]) == (["sigmoid"], 0.1, 1e-6)
    assert c["optim"] == "rmsprop" and c["warmup_steps"] == 150
    assert c["per_device_train_batch_size"] * c["gradient_accumulation_steps"] == 64
    # the authors' code: one epoch, 512 tokens, gradient norm clipped at 10, the full HH set
    assert (c["num_train_epochs"], c["max_length"], c["max_grad_norm"]) == (1, 512, 10.0)
    assert out["origin"]["num_train_epochs"] == "authors"
    assert out["dataset"] == "Anthropic/hh-rlhf"
    assert "authors' code: 5e-07" in out["sources"]["learning_rate"]


def test_rloo_paper_values():
    out = dry("rloo", "--model", "m", "--reward", "tests.rewards_for_tests:length_reward")
    c = out["config"]
    assert (c["num_generations"], c["beta"], c["learning_rate"]) == (2, 0.03, 1e-6)
    assert c["epsilon"] >= 1e6 and out["origin"]["epsilon"] == "paperrl"  # REINFORCE: no clipping
    assert out["batch"]["completions_per_step"] == 512 and out["batch"]["steps_per_rollout"] == 2
    # App. C: constant 1e-6 after a linear warm-up over 3% of the steps
    assert (c["lr_scheduler_type"], c["warmup_steps"]) == ("constant_with_warmup", 0.03)


def test_alphapo_paper_values_and_gamma_convention():
    out = dry("alphapo", "--model", "m")
    c = out["config"]
    # TRL rewrites loss_type=alphapo to simpo with cpo_alpha=0 in its post-init: the config is TRL's own
    assert (c["loss_type"], c["cpo_alpha"]) == ("simpo", 0.0)
    assert (c["alpha"], c["beta"], c["learning_rate"]) == (0.25, 2.5, 7e-7)
    assert c["simpo_gamma"] == pytest.approx(0.1 * 2.5)  # gamma/beta = 0.1 in the paper's table
    assert "gamma/beta" in out["sources"]["simpo_gamma"]
    assert (c["num_train_epochs"], c["max_length"]) == (1, 2048)  # SimPO's setup, which AlphaPO follows
    assert out["origin"]["max_length"] == "peer"


def test_bema_paper_values():
    out = dry("bema", "--model", "m")
    (cb,) = out["callbacks"]
    assert cb["name"] == "bema"
    assert cb["args"] == {"update_freq": 400, "ema_power": 0.5, "bias_power": 0.2, "lag": 10, "update_after": 0,
                          "multiplier": 1.0, "min_ema_multiplier": 1e-4}
    c = out["config"]  # the authors' code: a fixed 3e-5 for 2 epochs, 256 per step, 4096 tokens
    assert (c["learning_rate"], c["lr_scheduler_type"], c["num_train_epochs"], c["max_length"]) == \
        (3e-5, "constant", 2, 4096)
    assert c["per_device_train_batch_size"] * c["gradient_accumulation_steps"] == 256
    assert out["origin"]["learning_rate"] == "authors"


def test_demo_values_are_marked_demo():
    out = dry("dapo")
    assert out["origin"]["learning_rate"] == "demo" and out["config"]["learning_rate"] != 1e-6
    assert out["origin"]["epsilon"] == "paper"
    assert out["dataset"] == "demo:addition"
    assert dry("gspo")["origin"]["learning_rate"] == "demo"  # the demo's value, not TRL's default
    assert dry("dr-grpo")["origin"]["prompt_template"] == "demo"  # the tiny model never saw the Qwen-Math template
    assert out["config"]["bf16"] is False


def test_dry_run_yaml_and_table(cli):
    import yaml

    result = cli("gspo", "--dry-run", "--format", "yaml")
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout)["config"]["importance_sampling_level"] == "sequence"
    table = cli("gspo", "--dry-run")
    assert "importance_sampling_level" in table.stdout and "GSPO Eq. 7" in table.stdout


def test_json_dry_run_is_one_object_and_nothing_else(cli):
    result = cli("dr-grpo", "--dry-run", "--format", "json")
    assert json.loads(result.stdout)["recipe"] == "dr-grpo"
