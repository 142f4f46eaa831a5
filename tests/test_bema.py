"""paperrl's BEMA: the paper's update, frozen parameters and PEFT models (where TRL 1.16's callback fails)."""

from __future__ import annotations

import types

import pytest
import torch

from paperrl.callbacks import BEMA


def _state(step):
    return types.SimpleNamespace(global_step=step, is_world_process_zero=True)


def _run(model, steps, **kw):
    cb = BEMA(**kw)
    cb.on_train_begin(None, _state(0), None, model=model)
    history = []
    for step in range(1, steps + 1):
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(1.0)  # a deterministic "update": theta_t = theta_0 + t
        cb.on_step_end(None, _state(step), None)
        history.append(step)
    return cb


def test_update_matches_the_paper_by_hand():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    cb = _run(model, 2, update_freq=1, ema_power=0.5, bias_power=0.2, lag=10, update_after=1, multiplier=1.0)
    # snapshot at step 1 (theta_0 = 1); step 2 is t = 1: beta = 11^-0.5, alpha = 11^-0.2, theta_t = 2
    beta, alpha = 11 ** -0.5, 11 ** -0.2
    ema = (1 - beta) * 1.0 + beta * 2.0
    assert cb.bema["weight"].item() == pytest.approx(ema + alpha * (2.0 - 1.0))


def test_frozen_parameters_are_left_alone():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    cb = _run(model, 4, update_freq=2)
    assert set(cb.bema) == {"1.weight", "1.bias"}
    raw = cb.swap_in(model)
    assert not torch.equal(model[1].weight, raw["1.weight"])
    cb.swap_out(raw)
    assert torch.equal(model[1].weight, raw["1.weight"])


def test_trl_callback_fails_on_frozen_parameters():
    """The defect paperrl's callback exists for (if TRL fixes it, this test says so)."""
    from trl import BEMACallback
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    model.model.embed_tokens.requires_grad_(False)
    cb = BEMACallback(update_freq=1)
    cb.on_train_begin(None, _state(0), None, model=model)
    with pytest.raises(RuntimeError):
        cb.on_step_end(None, _state(1), None, model=model)


def test_peft_model_trains_with_bema_through_the_cli(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("bema", "--max-steps", "10", "--lora-r", "4", "--set", "callbacks.bema.update_freq=2",
                 "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "bema" / "adapter_config.json").exists()
    assert (out / "model" / "adapter_config.json").exists()


def test_bema_state_survives_a_checkpoint(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("bema", "--max-steps", "6", "--set", "save_steps=3", "--set", "callbacks.bema.update_freq=1",
               "--output-dir", out).returncode == 0
    assert (out / "checkpoint-3" / "bema_state.pt").exists()
