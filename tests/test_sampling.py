"""DAPO dynamic sampling: full rollouts of informative groups, counters, the bound policy."""

from __future__ import annotations

import pytest
import torch

from conftest import metrics
from paperrl import data as datamod
from paperrl import recipe as recipes
from paperrl import rewards
from paperrl.resolve import Options, resolve
from paperrl.builder import build_trainer

REWARD = "tests.rewards_for_tests:controlled"


def _trainer(*sets, reward=REWARD, metric=None):
    plan = resolve(recipes.load("gspo", ["dynamic_sampling.metric=" + (metric or reward.split(":")[1]), *sets]),
                   Options(output_dir="/tmp/paperrl-unused", rewards=[reward]))
    funcs, _ = rewards.build(plan.rewards)
    trainer = build_trainer(plan, datamod.load(plan), funcs)
    trainer.model.train()
    return trainer, plan


def _generation_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def _group_std(values, g):
    return values.view(-1, g).std(dim=1)


@pytest.mark.parametrize("metric", ["controlled", "reward"])
def test_every_trained_group_is_informative_and_the_rollout_is_full(cache_dir, metric):
    trainer, plan = _trainer("dynamic_sampling.enabled=true", "dynamic_sampling.oversample=1.5", metric=metric)
    g = trainer.num_generations
    for _ in range(3):
        batch = _generation_batch(trainer)
        out = trainer._generate_and_score_completions(batch)
        assert out["completion_ids"].shape[0] == len(batch)  # exactly the configured rollout
        assert (_group_std(trainer.last_rollout["metric"], g) > 0).all()
        assert trainer.last_rollout["kept"] == trainer.last_rollout["need"] == len(batch) // g
    logged = trainer._metrics["train"]
    if metric == "reward":  # TRL's own zero-std fraction of the trained batch
        assert logged["frac_reward_zero_std"][-1] == 0.0
    generated, kept = logged["dynamic_sampling/groups_generated"][-1], logged["dynamic_sampling/groups_kept"][-1]
    assert kept == len(batch) // g and generated >= kept
    assert logged["dynamic_sampling/fraction_kept"][-1] == pytest.approx(kept / generated)


def test_without_dynamic_sampling_the_same_data_has_zero_variance_groups(cache_dir):
    trainer, _ = _trainer()
    assert type(trainer).__name__ == "GRPOTrainer"
    batch = _generation_batch(trainer)
    trainer._generate_and_score_completions(batch)
    assert trainer._metrics["train"]["frac_reward_zero_std"][-1] > 0


@pytest.mark.parametrize("option", ["scale_rewards=batch", "multi_objective_aggregation=normalize_then_sum"])
def test_advantages_are_trls_own_over_the_kept_batch(cache_dir, option):
    """TRL computes the advantages on the kept batch, with whatever advantage options the run sets."""
    trainer, _ = _trainer("dynamic_sampling.enabled=true", "dynamic_sampling.oversample=1.5", option)
    out = trainer._generate_and_score_completions(_generation_batch(trainer))
    per_func, weights = trainer.last_rollout["rewards_per_func"], trainer.reward_weights  # the demo's and ours
    g = trainer.num_generations
    if option.startswith("scale_rewards"):  # weighted sum; group mean, batch std
        total = (per_func * weights).sum(dim=1)
        expected = (total.view(-1, g) - total.view(-1, g).mean(dim=1, keepdim=True)).flatten() / (total.std() + 1e-4)
    else:  # normalise each reward function within its group, weighted sum, then normalise over the batch
        grouped = per_func.view(-1, g, per_func.shape[1])
        z = (grouped - grouped.mean(dim=1, keepdim=True)) / (grouped.std(dim=1, keepdim=True) + 1e-4)
        summed = (z.reshape(-1, per_func.shape[1]) * weights).sum(dim=1)
        expected = (summed - summed.mean()) / (summed.std() + 1e-4)
    assert per_func.shape[1] == 2 and out["advantages"].tolist() == pytest.approx(expected.tolist(), abs=1e-4)


def test_bound_reached_trains_on_fill_and_counts_it(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("gspo", "--max-steps", "2", "--reward", "tests.rewards_for_tests:constant", "--output-dir", out,
                 "--set", "dynamic_sampling.enabled=true", "--set", "dynamic_sampling.metric=constant",
                 "--set", "dynamic_sampling.max_rounds=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dynamic sampling: after 2 generation rounds" in result.stderr
    row = next(r for r in metrics(out) if "dynamic_sampling/rounds" in r)
    assert row["dynamic_sampling/rounds"] == 2 and row["dynamic_sampling/exhausted"] == 1
    assert row["dynamic_sampling/groups_kept"] == 0


def test_bound_reached_with_stop_policy_stops_cleanly_with_checkpoint(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("gspo", "--max-steps", "5", "--reward", "tests.rewards_for_tests:constant", "--output-dir", out,
                 "--set", "dynamic_sampling.enabled=true", "--set", "dynamic_sampling.metric=constant",
                 "--set", "dynamic_sampling.max_rounds=1", "--set", "dynamic_sampling.on_exhausted=stop")
    assert result.returncode == 1
    assert "on_exhausted=stop" in result.stderr and "Traceback" not in result.stderr
    assert (out / "checkpoint-1").is_dir()
    import json

    assert json.loads((out / "summary.json").read_text())["status"] == "stopped"


def test_dapo_demo_logs_dynamic_sampling_metrics(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("dapo", "--max-steps", "8", "--output-dir", out).returncode == 0
    rows = [r for r in metrics(out) if "dynamic_sampling/rounds" in r]
    assert len(rows) == 2  # one per rollout (steps_per_rollout = 4)
    assert all(r["frac_reward_zero_std"] == 0.0 for r in rows)
    assert all(r["dynamic_sampling/groups_kept"] == 16 for r in rows)
