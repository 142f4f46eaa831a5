"""Bad input never crashes; an interrupted run loses nothing; secrets stay out of the run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, assert_user_error, metrics


def _start(args, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "paperrl", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(out: Path, n: int, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = out / "metrics.jsonl"
        if path.exists() and sum(1 for line in path.read_text().splitlines() if '"loss"' in line) >= n:
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    raise AssertionError("training did not reach the step")


def _steps(out):
    return [r["step"] for r in metrics(out) if "loss" in r]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_resume_continues(cache_dir, cli, tmp_path, sig):
    out = tmp_path / "run"
    args = ["dpo", "--max-steps", "3000", "--set", "save_steps=100000", "--output-dir", out]
    proc = _start(args, tmp_path)
    _wait_for_steps(out, 5, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    stopped = summary["steps"]
    assert summary["status"] == "interrupted" and (out / f"checkpoint-{stopped}").is_dir()
    assert _steps(out) == list(range(1, stopped + 1))  # metrics consistent with the checkpoint
    json.loads((out / "paperrl.json").read_text())
    result = cli(*args[:2], str(stopped + 5), *args[3:], "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert _steps(out) == list(range(1, stopped + 6))  # continues where it stopped: nothing twice, nothing lost


def test_kill_9_loses_at_most_the_steps_since_the_checkpoint(cache_dir, cli, tmp_path):
    out = tmp_path / "run"
    args = ["dpo", "--max-steps", "3000", "--set", "save_steps=10", "--output-dir", out]
    proc = _start(args, tmp_path)
    _wait_for_steps(out, 25, proc)
    proc.kill()
    proc.communicate(timeout=60)
    checkpoints = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")
                         if (p / "trainer_state.json").exists())
    assert checkpoints and checkpoints[-1] >= 20
    last = checkpoints[-1]
    result = cli("dpo", "--max-steps", str(last + 3), "--set", "save_steps=10", "--output-dir", out, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert _steps(out) == list(range(1, last + 4))


def test_failing_reward_keeps_the_last_checkpoint(cli, tmp_path):
    reward = tmp_path / "flaky.py"
    reward.write_text("calls = 0\n"
                      "def flaky(completions, **kw):\n"
                      "    global calls\n"
                      "    calls += 1\n"
                      "    if calls > 2:\n"
                      "        raise RuntimeError('grader unavailable')\n"
                      "    return [0.0 for _ in completions]\n")
    out = tmp_path / "run"
    result = cli("gspo", "--max-steps", "40", "--set", "save_steps=4", "--reward", f"{reward}:flaky", "--output-dir", out)
    assert_user_error(result, "reward function 'flaky' raised RuntimeError: grader unavailable",
                      "the last checkpoint", "is intact")
    assert (out / "checkpoint-8" / "trainer_state.json").exists()


def _files_containing(folder: Path, secret: str) -> list[str]:
    """Every file under `folder`, binary ones included (training_args.bin is a pickle)."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_token_given_by_set_reaches_no_file(cli, tmp_path):
    secret = "hf_NotARealToken1234567890"
    out = tmp_path / "run"
    result = cli("dpo", "--max-steps", "2", "--set", "save_steps=1", "--output-dir", out,
                 "--set", f"hub_token={secret}", env={"HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model" / "training_args.bin").exists() and (out / "checkpoint-2" / "training_args.bin").exists()
    assert _files_containing(out, secret) == []
    assert secret not in result.stdout + result.stderr
    record = json.loads((out / "paperrl.json").read_text())
    assert "--set hub_token=<HF_TOKEN>" in record["command"]
    assert "moved to $HF_TOKEN" in record["sources"]["hub_token"]


def test_environment_secrets_reach_no_file(cli, tmp_path):
    wandb = "wandb0123456789abcdef"
    out = tmp_path / "run"
    result = cli("dpo", "--max-steps", "2", "--output-dir", out, "--set", f"run_name=x{wandb}",
                 env={"WANDB_API_KEY": wandb})
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p for p in _files_containing(out, wandb) if p.endswith((".json", ".jsonl"))] == []


def test_disk_full_is_a_clear_message_and_the_old_file_survives(tmp_path, monkeypatch):
    from paperrl.errors import PaperrlError
    from paperrl.rundir import write_json_atomic

    target = tmp_path / "summary.json"
    target.write_text('{"old": true}')

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(PaperrlError, match="No space left on device"):
        write_json_atomic(target, {"new": True})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_unwritable_output_directory(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(cli("dpo", "--output-dir", blocker / "run"), "--output-dir")
    assert_user_error(cli("dpo", "--output-dir", "/proc/paperrl-run"), "--output-dir /proc/paperrl-run")


def test_all_problems_are_reported_together(cli, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "x").write_text("x")
    result = cli("gspo", "--set", "loss_type=gspo", "--set", "learnig_rate=1", "--output-dir", out)
    assert_user_error(result, "learnig_rate", "not empty")


def test_bad_dataset_and_reward_together(cli, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1+1="}\n')
    result = cli("gspo", "--model", "x", "--dataset", data, "--reward", "tests.rewards_for_tests:nope",
                 "--output-dir", tmp_path / "r")
    assert_user_error(result, "has no function 'nope'", "needs the columns prompt")


def test_workers_get_the_plan_as_json_without_secrets(cache_dir, monkeypatch):
    """The launcher hands its resolved plan to the workers as JSON in their environment (never a pickle
    read from a path), and a secret given by --set is not in it."""
    from paperrl import recipe as recipes
    from paperrl.resolve import Options, Plan, resolve

    monkeypatch.setenv("HF_TOKEN", "")
    secret = "hf_NotARealToken1234567890"
    plan = resolve(recipes.load("dapo", [f"hub_token={secret}", "dynamic_sampling.max_rounds=3"]),
                   Options(model="m", num_processes=2, lora_r=4))
    text = plan.to_json()
    assert secret not in text
    again = Plan.from_json(json.dumps(json.loads(text)))
    assert again.recipe == plan.recipe and again.recipe.user_set == plan.recipe.user_set
    assert (again.config, again.options, again.rewards, again.dynamic_sampling) == \
           (plan.config, plan.options, plan.rewards, plan.dynamic_sampling)
