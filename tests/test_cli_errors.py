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
    from paperrl.recipe import RECIPE_DIR

    text = (RECIPE_DIR / "gspo.yaml").read_text()
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
                      "dynamic_sampling.max_rounds: expected an integer >= 1")


def test_bad_reward_spec(cli):
    assert_user_error(cli("gspo", "--dry-run", "--reward", "nocolon"), "--reward nocolon: expected module:function")


def test_bad_format(cli):
    assert_user_error(cli("gspo", "--dry-run", "--format", "xml"), "--format xml: accepted: table, json, yaml, python")
