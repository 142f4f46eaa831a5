"""Every recipe trains end to end on the embedded default, through the real CLI."""

from __future__ import annotations

import json
import math

import pytest

from conftest import assert_user_error, metrics
from paperrl import recipe as recipes
from paperrl.resolve import Options, resolve

ALL = ["alphapo", "bema", "dapo", "dpo", "dr-grpo", "gspo", "lite-ppo", "rloo"]


@pytest.mark.parametrize("name", ALL)
def test_recipe_trains_a_few_steps(cli, tmp_path, name):
    out = tmp_path / name
    result = cli(name, "--max-steps", "4", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    for f in ("paperrl.json", "metrics.jsonl", "summary.json", "model/config.json", "model/model.safetensors"):
        assert (out / f).exists(), f
    rows = metrics(out)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    record = json.loads((out / "paperrl.json").read_text())
    assert record["recipe"] == name and record["num_processes"] == 1
    assert set(record["versions"]) >= {"python", "torch", "transformers", "trl", "accelerate"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert "eval" in summary  # held-out split, before and after
    if name == "bema":
        assert (out / "bema" / "model.safetensors").exists()


def _trainer(name, output_dir="/tmp/paperrl-unused", **opts):
    from paperrl import data as datamod
    from paperrl import rewards
    from paperrl.builder import build_trainer

    plan = resolve(recipes.load(name), Options(output_dir=output_dir, **opts))
    funcs, _ = rewards.build(plan.rewards) if plan.kind.online else ([], {})
    return build_trainer(plan, datamod.load(plan), funcs)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(recipes.available()) - set(ALL)))
def test_every_other_recipe_trains_on_the_embedded_default(cache_dir, tmp_path, name):
    """The recipes added for the Paper Index (issue 15) share their trainer kinds with ALL, whose runs go through
    the CLI above: each one trains a few steps here, in this process, with its own loss and settings."""
    trainer = _trainer(name, output_dir=str(tmp_path), max_steps=3)
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert trainer.state.global_step == 3 and losses and all(math.isfinite(x) for x in losses)


def test_defining_settings_reach_the_trainer(cache_dir):
    gspo = _trainer("gspo")
    assert gspo.importance_sampling_level == "sequence" and gspo.loss_type == "grpo"
    assert (gspo.epsilon_low, gspo.epsilon_high) == (3e-4, 4e-4)
    dapo = _trainer("dapo")
    assert type(dapo).__name__ == "DynamicSamplingGRPOTrainer"
    assert dapo.reward_func_names == ["answer_match", "soft_overlong_punishment"]
    assert dapo.mask_truncated_completions is True and dapo.loss_type == "dapo"
    assert (dapo.epsilon_low, dapo.epsilon_high) == (0.2, 0.28)
    assert _trainer("dr-grpo").scale_rewards == "none"
    lite = _trainer("lite-ppo")
    assert lite.scale_rewards == "batch" and lite.loss_type == "dapo"
    alphapo = _trainer("alphapo")
    assert (alphapo.loss_type, alphapo.alpha, alphapo.cpo_alpha) == ("simpo", 0.25, 0.0)
    bema = _trainer("bema")
    assert any(type(c).__name__ == "BEMA" for c in bema.callback_handler.callbacks)


def test_demo_improves_the_test_metric(cli, tmp_path):
    """The embedded default's promise: GSPO learns in under a minute. How much is measured over seeds by
    `make results`; here only the direction, which every seed there shows."""
    out = tmp_path / "gspo"
    result = cli("gspo", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    ev = json.loads((out / "summary.json").read_text())["eval"]
    assert ev["metric"] == "test exact-match accuracy (greedy)" and ev["seeds"] == 1
    assert ev["after"] > ev["before"], ev
    assert "test exact-match accuracy" in result.stderr and str(out / "model") in result.stderr.replace("\n", "")


def test_second_run_into_same_dir_is_refused_and_first_run_untouched(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("dpo", "--max-steps", "2", "--output-dir", out).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = cli("dpo", "--max-steps", "2", "--output-dir", out)
    assert_user_error(result, "not empty", "--resume", "--overwrite")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert cli("dpo", "--max-steps", "2", "--output-dir", out, "--overwrite").returncode == 0


def test_resume_continues_from_the_saved_step(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("dpo", "--max-steps", "6", "--set", "save_steps=3", "--output-dir", out).returncode == 0
    import shutil

    shutil.rmtree(out / "checkpoint-6")  # as if the run had died after step 5
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join(lines[:5]) + "\n")
    result = cli("dpo", "--max-steps", "6", "--set", "save_steps=3", "--output-dir", out, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    steps = [r["step"] for r in metrics(out) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert json.loads((out / "summary.json").read_text())["steps"] == 6


def test_resume_without_checkpoint_is_an_error(cli, tmp_path):
    assert_user_error(cli("dpo", "--output-dir", tmp_path / "none", "--resume"), "holds no checkpoint")


def test_dora_trains_a_weight_decomposed_adapter(cli, cache_dir, tmp_path):
    bad = cli("gspo", "--dora", "--dry-run")
    assert bad.returncode == 2 and bad.stderr == "error: --dora: needs --lora-r RANK (DoRA is a LoRA variant)\n"
    trainer = _trainer("bema", output_dir=str(tmp_path), max_steps=1, lora_r=2, dora=True)
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_magnitude_vector" in n for n in names)  # DoRA's magnitude, beside LoRA's A and B
    assert all("lora_" in n for n in names)  # the base weights stay frozen
    trainer.train()
    assert trainer.state.global_step == 1
