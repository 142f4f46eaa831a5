"""The embedded default: a split without commutative twins, a cache keyed by its build code, honest summaries."""

from __future__ import annotations

import json
import sys

import pytest

from paperrl import demo


def _sums(split):
    return {tuple(sorted(map(int, r["prompt"][:-1].split("+")))) for r in demo.rows("grpo", split)}


def test_no_commutative_twin_crosses_the_split():
    train, validation, test = _sums("train"), _sums("validation"), _sums("test")
    assert not (train & test) and not (train & validation) and not (validation & test)
    assert len(test) == demo.TEST_PAIRS and len(validation) == demo.VALIDATION_PAIRS
    # both orders of a test pair are test prompts: a + b never trains the answer to b + a
    prompts = {r["prompt"] for r in demo.rows("grpo", "test")}
    assert all(f"{b}+{a}=" in prompts for a, b in (p[:-1].split("+") for p in prompts))


def test_every_trainer_kind_sees_the_same_split():
    for kind in ("grpo", "dpo", "sft"):
        assert [r["prompt"] for r in demo.rows(kind, "test")] == [r["prompt"] for r in demo.rows("grpo", "test")]


def test_cache_key_follows_the_build_code_and_the_libraries(monkeypatch):
    key = demo.build_key()
    assert demo.model_dir().name.endswith(key)
    monkeypatch.setattr(demo, "WARM_UP_TARGET", demo.WARM_UP_TARGET + 0.1)
    assert demo.build_key() != key  # a changed warm-up builds a new model
    monkeypatch.undo()
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda package: "0.0.0")
    assert demo.build_key() != key  # so does another torch or transformers


def test_greedy_exact_match_by_teacher_forcing_equals_generation(cache_dir):
    """evaluate() scores greedy answers in one forward pass; it must agree with generate() row by row."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(demo.model_dir())
    tokenizer = AutoTokenizer.from_pretrained(demo.model_dir())
    rows = demo.rows("sft", "test")
    generated = []
    for row in rows:
        ids = torch.tensor([tokenizer(row["prompt"])["input_ids"]])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        generated.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == row["completion"])
    assert demo.evaluate(model, tokenizer, "sft")["value"] == pytest.approx(sum(generated) / len(rows))
    assert 0 < sum(generated) < len(rows)  # the warm-up leaves room to learn


def test_one_seed_says_so_and_bema_reports_both_weights(cli, tmp_path):
    out = tmp_path / "bema"
    result = cli("bema", "--max-steps", "6", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    ev = json.loads((out / "summary.json").read_text())["eval"]
    assert ev["split"] == "test" and ev["n"] == len(demo.rows("sft", "test")) and ev["seeds"] == 1
    assert ev["weights"] == "BEMA average" and 0 <= ev["raw_iterate"] <= 1
    assert "one seed" in result.stderr and "raw iterate" in result.stderr


def test_results_interval_and_verdict():
    sys.path.insert(0, str(demo.Path(__file__).resolve().parents[1] / "bench"))
    import results

    learns = results.interval([0.10, 0.12, 0.08])
    assert learns["mean"] == pytest.approx(0.10) and learns["se"] == pytest.approx(0.02 / 3 ** 0.5)
    assert learns["low"] == pytest.approx(0.10 - 4.303 * learns["se"]) and learns["verdict"] == "learns"
    assert results.interval([0.05, -0.04, 0.02])["verdict"] == "no measurable change"
    assert results.interval([-0.10, -0.12, -0.08])["verdict"] == "gets worse"
