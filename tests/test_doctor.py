"""`paperrl doctor`: on this CPU machine for real, and every GPU branch with faked device facts."""

from __future__ import annotations

import json

import pytest

from conftest import run_in_process

from paperrl import doctor
from paperrl.doctor import Gpu, Machine

QWEN_7B = {"hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28, "num_hidden_layers": 28,
           "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
H100x8 = Machine([Gpu("NVIDIA H100 80GB HBM3", 79.2)] * 8, bf16=True, cpus=64, memory_gib=2000)


@pytest.fixture
def qwen7b(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN_7B))
    return str(tmp_path)


def rows(*args, **kw) -> dict:
    return dict(doctor.report(*args, **kw))


def test_doctor_on_this_machine_exits_0_without_trl():
    import subprocess
    import sys

    code = ("import sys; sys.argv = ['paperrl', 'doctor', 'gspo']\n"
            "from paperrl.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('HEAVY', [m for m in ('transformers', 'trl') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    for label in ("versions", "devices", "precision", "extras", "accelerate", "recipe", "batch", "memory", "launch"):
        assert f" {label} " in out.stdout, label


def test_cpu_facts():
    r = rows(machine=Machine(cpus=2, memory_gib=16))
    assert r["devices"] == "no CUDA GPU; 2 CPU cores, 16 GiB RAM"
    assert r["precision"].startswith("fp32")
    assert r["processes"].startswith("1 ")
    assert "recipe" not in r


def test_extras_name_the_install_command(monkeypatch):
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name: None)  # none installed
    extras = doctor._extras()
    assert "vllm missing (--vllm colocate|server): pip install 'paperrl[vllm]'" in extras
    assert "deepspeed missing (--accelerate-config zero1|zero2|zero3): pip install 'paperrl[deepspeed]'" in extras
    assert "peft missing (--lora-r): pip install peft" in extras


def test_gpus_bf16_one_process_per_gpu(qwen7b):
    r = rows("dapo", qwen7b, machine=H100x8)
    assert r["devices"].startswith("8 x NVIDIA H100 80GB HBM3 (79 GiB)")
    assert r["precision"].startswith("bf16")
    assert r["processes"].startswith("8 ")
    assert r["accelerate"].startswith("--multi_gpu: DDP over 8 processes")
    # DAPO: 512 per update over 8 processes of micro-batch 8: 8 accumulation steps, 16 updates per rollout
    assert "per_device_train_batch_size 8, gradient_accumulation_steps 8, steps_per_generation 128" in r["batch"]
    assert r["launch"].startswith("accelerate launch --num_processes 8 --multi_gpu")
    assert r["launch"].endswith(f"-m paperrl dapo --model {qwen7b}")


def test_gpus_without_bf16_get_fp16():
    r = rows(machine=Machine([Gpu("Tesla V100-SXM2-32GB", 31.7)], bf16=False))
    assert r["precision"].startswith("fp16")


def test_batch_that_does_not_divide_names_the_nearest_process_counts(qwen7b):
    r = rows("dapo", qwen7b, 3, machine=H100x8)
    assert "nearest valid process counts: 2 or 4" in r["batch"]
    assert "memory" not in r


def test_memory_estimate_from_config_json(qwen7b):
    assert doctor.parameters(QWEN_7B) == pytest.approx(7.62e9, rel=0.01)  # Qwen2.5-7B: 7.61 B
    r = rows("dpo", qwen7b, machine=H100x8)
    # bf16: weights, gradients 14.2 GiB each, AdamW 28.4 GiB, DPO's reference model 14.2 GiB
    assert "7.62 B parameters from config.json" in r["memory"]
    assert "reference model 14.2 GiB" in r["memory"] and "(fits one GPU)" in r["memory"]
    dapo = rows("dapo", qwen7b, machine=H100x8)["memory"]
    assert "KV cache of one generation batch (1024 x 512+20480 tokens)" in dapo and "over one GPU's 79 GiB" in dapo
    assert "reference model" not in dapo  # beta = 0


def test_memory_estimate_from_the_name_when_no_config(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = rows("gspo", "someone/Llama-3.1-8B-Instruct", machine=H100x8)
    assert "8.00 B parameters from the name" in r["memory"]
    assert rows("gspo", "someone/model", machine=H100x8)["memory"].startswith("no estimate")


def test_cli_usage_errors():
    result = run_in_process(["doctor", "nope"])
    assert result.returncode == 2 and "unknown recipe 'nope'" in result.stderr
