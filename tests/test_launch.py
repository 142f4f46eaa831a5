"""Scaling out: several processes through the CLI's own launch path, accelerate configs, optional extras."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, assert_user_error, dry, metrics
from paperrl.launch import named_configs


@pytest.mark.parametrize("name", ["gspo", "dapo", "dpo"])
def test_two_cpu_processes_train_and_only_one_writes(cli, tmp_path, name):
    out = tmp_path / name
    result = cli(name, "--num-processes", "2", "--max-steps", "2", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 0/2 trained 2 steps" in result.stderr and "process 1/2 trained 2 steps" in result.stderr
    steps = [r["step"] for r in metrics(out) if "loss" in r]
    assert steps == [1, 2]  # one writer: no step twice
    assert result.stderr.count("paperrl " + name + ": completed") == 1
    record = json.loads((out / "paperrl.json").read_text())
    assert record["num_processes"] == 2 and record["launch"]["command"].startswith("accelerate launch")
    assert record["batch"] is None or record["batch"]["num_processes"] == 2
    assert not (out / ".paperrl-plan.pkl").exists()


def test_accelerate_launch_by_hand(cache_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "paperrl", "dpo", "--max-steps", "2", "--output-dir", str(out)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "paperrl.json").read_text())["num_processes"] == 2


@pytest.mark.parametrize("config", ["multi_gpu", "zero2", "zero3", "fsdp2"])
def test_named_accelerate_configs(config):
    out = dry("dapo", "--model", "m", "--num-processes", "8", "--accelerate-config", config)
    command = out["launch"]["command"]
    assert command.startswith("accelerate launch --num_processes 8 --config_file ")
    assert str(named_configs()[config]) in command
    assert command.endswith("-m paperrl dapo --model m --dry-run --format json")


def test_multi_node_options_pass_through():
    out = dry("gspo", "--model", "m", "--num-processes", "16", "--num-machines", "2", "--machine-rank", "1",
              "--main-process-ip", "10.0.0.1", "--main-process-port", "29500")
    command = out["launch"]["command"]
    for part in ("--num_machines 2", "--machine_rank 1", "--main_process_ip 10.0.0.1", "--main_process_port 29500"):
        assert part in command
    assert "--num-machines" not in command.split(" -m paperrl ")[1]


def test_unknown_accelerate_config(cli):
    assert_user_error(cli("gspo", "--dry-run", "--num-processes", "2", "--accelerate-config", "zero4"),
                      "--accelerate-config zero4: unknown name", "did you mean 'zero", "accepted: fsdp1, fsdp2")


def test_vllm_shown_in_dry_run_and_missing_extra_is_one_line(cli, tmp_path):
    out = dry("gspo", "--vllm", "colocate")
    assert out["config"]["use_vllm"] is True and out["config"]["vllm_mode"] == "colocate"
    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    result = cli("gspo", "--vllm", "colocate", "--output-dir", tmp_path / "r")
    assert_user_error(result, "vLLM is not installed", "pip install 'paperrl[vllm]'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert_user_error(cli("serve", "some/model"), "vLLM is not installed")
