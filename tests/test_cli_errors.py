"""Every user error: exit code 2, one clear message naming the file/option, field and what is accepted."""

from __future__ import annotations

import pytest

from conftest import assert_user_error, dry


def test_unknown_recipe_suggests_closest(cli):
    assert_user_error(cli("gpso", "--dry-run"), "unknown recipe or command 'gpso'", "did you mean 'gspo'")


def test_unknown_set_name_suggests_closest(cli):
    assert_user_error(cli("gspo", "--dry-run", "--set", "learnig_rate=1e-5"),
                      "--set learnig_rate: unknown name", "did you mean 'learning_rate'")


def test_wrong_type(cli):
    assert_user_error(cli("gspo", "--dry-run", "--set", "learning_rate=fast"), "--set learning_rate", "expected float")


@pytest.mark.parametrize("field,value", [("loss_type", "gspo"), ("importance_sampling_level", "seq"),
                                         ("scale_rewards", "std")])
def test_closed_sets_are_checked_even_where_trl_accepts_any_string(cli, field, value):
    assert_user_error(cli("gspo", "--dry-run", "--set", f"{field}={value}"), f"--set {field}",
                      f"'{value}' is not accepted", "accepted:")


def test_rule_contradiction_quotes_rule_and_source(cli):
    result = cli("gspo", "--dry-run", "--set", "steps_per_generation=6")
    assert_user_error(result, "contradicts the rule steps_per_generation = 4 × gradient_accumulation_steps",
                      "GSPO v2 §5.1", "must be 4")


def test_trl_post_init_rejection(cli):
    result = cli("gspo", "--dry-run", "--set", "num_generations=3")
    assert_user_error(result, "TRL's GRPOConfig rejected the resolved config")


def test_malformed_recipe_file(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrainer: grpo\n  config: [\n")
    assert_user_error(cli("run", bad, "--dry-run"), str(bad), "malformed YAML")


def test_missing_recipe_file(cli, tmp_path):
    assert_user_error(cli("run", tmp_path / "nope.yaml", "--dry-run"), "no such recipe file")


def test_non_mapping_recipe(cli, tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    assert_user_error(cli("run", bad, "--dry-run"), "must be a YAML mapping")


def test_all_errors_of_a_file_are_reported_together(cli, tmp_path):
    from paperrl.recipe import available

    text = available()["gspo"].read_text()
    text = text.replace("importance_sampling_level:", "importance_sampling_levl:")
    text = text.replace("summary:", "sumary:")
    text = text.replace("loss_type: {value: grpo", "loss_type: {value: gspo")
    path = tmp_path / "gspo.yaml"
    path.write_text(text)
    result = cli("run", path, "--dry-run")
    assert_user_error(result, "sumary: unknown key", "summary: required key is missing",
                      "config.importance_sampling_levl: not a field", "did you mean 'importance_sampling_level'",
                      "config.loss_type: 'gspo' is not accepted")
    assert len(result.stderr.strip().splitlines()) == 4


def test_unknown_trainer(cli, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\ntrainer: grpp\n")
    assert_user_error(cli("run", path, "--dry-run"), "trainer: 'grpp'", "did you mean 'grpo'")


def test_debug_env_shows_traceback(cli):
    result = cli("gspo", "--dry-run", "--set", "loss_type=gspo", env={"PAPERRL_DEBUG": "1"})
    # run_cli strips PAPERRL_DEBUG from the inherited env, but an explicit env wins
    assert result.returncode != 0


def test_set_follows_rule(cli):
    out = dry("gspo", "--set", "gradient_accumulation_steps=2")
    assert out["config"]["steps_per_generation"] == 8
    assert out["origin"]["gradient_accumulation_steps"] == "user"
    assert out["origin"]["steps_per_generation"] == "derived"


def test_set_consistent_with_rule_is_accepted(cli):
    out = dry("gspo", "--set", "gradient_accumulation_steps=2", "--set", "steps_per_generation=8")
    assert out["config"]["steps_per_generation"] == 8 and out["origin"]["steps_per_generation"] == "user"


def test_set_dotted_paths_and_yaml_scalars(cli):
    out = dry("dapo", "--model", "m", "--set", "dynamic_sampling.max_rounds=3", "--set", "beta=0.01",
              "--set", "rewards.soft_overlong_punishment.soft_punish_cache=1024", "--set", "mask_truncated_completions=false")
    assert out["dynamic_sampling"]["max_rounds"] == 3
    assert out["origin"]["dynamic_sampling.max_rounds"] == "user"
    assert out["config"]["beta"] == 0.01 and out["origin"]["beta"] == "user"
    assert out["config"]["mask_truncated_completions"] is False
    (sop,) = [r for r in out["rewards"] if r["name"] == "soft_overlong_punishment"]
    assert sop["args"]["soft_punish_cache"] == 1024


def test_set_on_demo_value_wins_over_demo(cli):
    out = dry("dapo", "--set", "learning_rate=1e-5")
    assert out["config"]["learning_rate"] == 1e-5 and out["origin"]["learning_rate"] == "user"


def test_dynamic_sampling_can_be_enabled_on_any_grpo_recipe(cli):
    out = dry("gspo", "--set", "dynamic_sampling.enabled=true", "--set", "dynamic_sampling.metric=answer_match")
    assert out["dynamic_sampling"]["enabled"] is True


def test_dynamic_sampling_on_non_grpo_is_an_error(cli):
    assert_user_error(cli("dpo", "--dry-run", "--set", "dynamic_sampling.enabled=true"),
                      "dynamic sampling needs a GRPO-family recipe")


def test_dynamic_sampling_metric_must_name_a_reward(cli):
    assert_user_error(cli("dapo", "--dry-run", "--model", "m", "--set", "dynamic_sampling.metric=acc"),
                      "'acc' names no reward function", "accuracy")


@pytest.mark.parametrize("value", ["0", "-3"])
def test_dynamic_sampling_bound_must_be_positive(cli, value):
    assert_user_error(cli("dapo", "--dry-run", "--set", f"dynamic_sampling.max_rounds={value}"),
                      "--set dynamic_sampling.max_rounds: expected a value >= 1")


def test_bad_reward_spec(cli):
    assert_user_error(cli("gspo", "--dry-run", "--reward", "nocolon"), "--reward nocolon: expected module:function")


def test_bad_format(cli):
    assert_user_error(cli("gspo", "--dry-run", "--format", "xml"), "--format xml: accepted: table, json, yaml, python")


# ---------------------------------------------------------------- caught when the recipe is read (issue 14)


def _edited(tmp_path, recipe, *replacements):
    from paperrl.recipe import available

    text = available()[recipe].read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{recipe}.yaml"
    path.write_text(text)
    return path


def test_bad_reward_and_callback_arguments_and_objective_value_fail_the_dry_run(cli, tmp_path):
    dapo = _edited(tmp_path, "dapo", ("soft_punish_cache: {value: 4096", "soft_punish_cach: {value: 4096"),
                   ("advantage: {value: group", "advantage: {value: grup"))
    result = cli("run", dapo, "--dry-run")
    assert_user_error(result, "rewards.soft_overlong_punishment.args.soft_punish_cach: not an argument of "
                      "soft_overlong_punishment (did you mean 'soft_punish_cache'?)",
                      "rewards.soft_overlong_punishment: missing argument(s) soft_punish_cache",
                      "objective.advantage.value:", "got 'grup' (did you mean 'group'?)")
    assert len(result.stderr.strip().splitlines()) == 3  # all of them, at once
    bema = _edited(tmp_path, "bema", ("update_freq:", "update_frq:"))
    assert_user_error(cli("run", bema, "--dry-run"), "callbacks.bema.args.update_frq: not an argument of bema "
                      "(did you mean 'update_freq'?); accepted: update_freq")


def test_a_bad_argument_is_exit_2_before_anything_is_written(cli, tmp_path):
    bema = _edited(tmp_path, "bema", ("update_freq:", "update_frq:"))
    out = tmp_path / "run"
    assert_user_error(cli("run", bema, "--output-dir", out), "update_frq")
    assert not out.exists()


def test_unknown_reward_or_callback_name_in_a_recipe_file(cli, tmp_path):
    dapo = _edited(tmp_path, "dapo", ("- name: soft_overlong_punishment\n    args:", "- name: soft_overlong\n    args:"))
    assert_user_error(cli("run", dapo, "--dry-run"), "rewards: 'soft_overlong' is unknown",
                      "did you mean 'soft_overlong_punishment'")
    bema = _edited(tmp_path, "bema", ("- name: bema", "- name: ema"))
    assert_user_error(cli("run", bema, "--dry-run"), "callbacks: 'ema' is unknown", "accepted: bema")


def test_reward_argument_types_are_checked_against_the_signature(cli):
    assert_user_error(cli("dapo", "--dry-run", "--set", "rewards.soft_overlong_punishment.soft_punish_cache=abc"),
                      "--set rewards.soft_overlong_punishment.soft_punish_cache: expected int, got 'abc'")


@pytest.mark.parametrize("path,value,message", [
    ("dynamic_sampling.on_exhausted", "halt", "Input should be 'train' or 'stop', got 'halt'"),
    ("dynamic_sampling.enabled", "3", "Input should be a valid boolean, got 3"),
    ("batch.completions_per_step", "0", "expected a value >= 1, got 0"),
])
def test_closed_sets_and_ranges_of_the_recipe_schema(cli, path, value, message):
    assert_user_error(cli("dapo", "--dry-run", "--set", f"{path}={value}"), f"--set {path}: {message}")


@pytest.mark.parametrize("args,message", [
    (["--max-steps", "-5"], "--max-steps -5: expected an integer >= 1"),
    (["--per-device-batch-size", "0"], "--per-device-batch-size 0: expected an integer >= 1"),
    (["--lora-r", "0"], "--lora-r 0: expected an integer >= 1"),
    (["--set", "per_device_train_batch_size=-4"], "--set per_device_train_batch_size: expected an integer >= 1"),
    (["--set", "gradient_accumulation_steps=0"], "--set gradient_accumulation_steps: expected an integer >= 1"),
    (["--set", "max_steps=-5"], "--set max_steps: expected an integer >= 1"),
])
def test_counts_and_sizes_out_of_range(cli, tmp_path, args, message):
    out = tmp_path / "run"
    assert_user_error(cli("gspo", *args, "--output-dir", out), message)
    assert not out.exists()


def test_trl_closed_sets_come_from_the_installed_trl(cli):
    assert_user_error(cli("bema", "--dry-run", "--set", "loss_type=nl"), "--set loss_type: 'nl' is not accepted",
                      "did you mean 'nll'", "accepted:", "dft")
    assert dry("bema", "--set", "loss_type=dft")["config"]["loss_type"] == "dft"


def test_exact_normaliser_needs_whole_accumulation_windows(cli, tmp_path):
    out = tmp_path / "run"
    assert_user_error(cli("dapo", "--set", "steps_per_generation=3", "--set", "gradient_accumulation_steps=2",
                          "--output-dir", out), "steps_per_generation=3: with exact_token_normaliser it must be a "
                                                "multiple of gradient_accumulation_steps=2")
    assert not out.exists()
    assert dry("dapo", "--set", "steps_per_generation=3", "--set", "gradient_accumulation_steps=2",
               "--set", "exact_token_normaliser=false")["config"]["steps_per_generation"] == 3


def test_a_null_reward_entry_is_a_user_error(cli, tmp_path):
    """Found by the fuzzer: `rewards: [null]` was an internal error."""
    import yaml

    from paperrl.recipe import available

    raw = yaml.safe_load(available()["gspo"].read_text())
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**raw, "rewards": [None]}))
    assert_user_error(cli("run", path, "--dry-run"), "rewards.0")
