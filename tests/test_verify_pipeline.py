"""paperrl verify beyond the loss: verifier, template, filter, batch, schedule and epochs against the paper."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest

from paperrl import verify_pipeline as vp
from paperrl.resolve import gaps
from paperrl import recipe as recipes

RECIPES = ["gspo", "dapo", "dr-grpo", "lite-ppo", "rloo", "dpo", "alphapo", "bema"]
SCHEDULE = "learning rate at chosen steps (the optimizer and scheduler TRL's Trainer builds)"


def _statuses(name, sets=()) -> dict:
    return {c.check: c.status for c in vp.verify_pipeline(name, list(sets))}


def test_schedules_by_hand():
    assert vp.lr_at(0, 1e-6, "constant_with_warmup", 320, 1000) == 0.0
    assert vp.lr_at(160, 1e-6, "constant_with_warmup", 320, 1000) == pytest.approx(5e-7)
    assert vp.lr_at(999, 1e-6, "constant_with_warmup", 320, 1000) == pytest.approx(1e-6)
    assert vp.lr_at(15, 1e-6, "constant_with_warmup", 0.03, 1000) == pytest.approx(5e-7)  # 3% of 1000 = 30 steps
    assert vp.lr_at(0, 3e-5, "constant", 0, 1000) == pytest.approx(3e-5)
    assert vp.lr_at(550, 7e-7, "cosine", 0.1, 1000) == pytest.approx(3.5e-7)  # half-way through the decay
    assert vp.lr_at(500, 1e-6, "linear", 0, 1000) == pytest.approx(5e-7)


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_pipeline_matches_the_paper(name):
    checks = vp.verify_pipeline(name, [])
    assert checks and all(c.status in ("PASS", "GAP") for c in checks), [asdict(c) for c in checks if c.status != "PASS"]
    unsourced = gaps(recipes.load(name))  # a GAP row names a value the recipe leaves unsourced
    assert all(any(f in c.note for f in unsourced) for c in checks if c.status == "GAP")


def test_rows_are_deterministic():
    first, second = vp.verify_pipeline("dr-grpo", []), vp.verify_pipeline("dr-grpo", [])
    assert [asdict(c) for c in first] == [asdict(c) for c in second]


def test_lite_ppo_schedule_is_a_gap():
    row = next(c for c in vp.verify_pipeline("lite-ppo", []) if c.check == SCHEDULE)
    assert row.status == "GAP" and "lr_scheduler_type, warmup_steps" in row.note


def test_the_numbers_the_rows_check():
    rows = {c.check: c for c in vp.verify_pipeline("dapo", [])}
    assert "per update: paper 512, run 512; per rollout: paper 8192, run 8192; per prompt: paper 16, run 16; " \
           "updates per rollout: paper 16, run 16" in rows["samples per update and per rollout on 8 processes"].note
    assert "gradient_accumulation_steps=8" in rows["samples per update and per rollout on 8 processes"].note
    assert "step 160: paper 5e-07, run 5e-07" in rows[SCHEDULE].note  # half-way through the 320-update warm-up
    verifier = rows["reward verifier on BytedTsinghua-SIA/DAPO-Math-17k's answer format"]
    assert "'The sum is $\\\\boxed{34}$.': paper -1, run -1" in verifier.note  # no Answer: line
    dr = {c.check: c for c in vp.verify_pipeline("dr-grpo", [])}
    assert "(3000 tokens): paper 0, run 0" in dr["reward verifier on DigitalLearningGmbH/MATH-lighteval's answer format"].note
    assert "paper keeps rows [0, 3, 4, 5, 6] of 9" in dr["data filter: the rows kept"].note  # levels 3-5, <= 1024 tokens


@pytest.mark.parametrize("name,sets,broken", [
    ("dapo", ["warmup_steps=0"], {SCHEDULE}),
    ("rloo", ["lr_scheduler_type=linear"], {SCHEDULE}),
    ("dapo", ["gradient_accumulation_steps=2"], {"samples per update and per rollout on 1 process",
                                                 "samples per update and per rollout on 8 processes"}),
    ("gspo", ["num_iterations=2"], {"samples per update and per rollout on 1 process",
                                    "samples per update and per rollout on 8 processes"}),
    ("bema", ["batch.examples_per_step=128"], {"examples per update on 1 process", "examples per update on 8 processes"}),
    ("dpo", ["num_train_epochs=3"], {"epochs"}),
    ("dapo", ["rewards.dapo_accuracy.wrong=0"], {"reward verifier on BytedTsinghua-SIA/DAPO-Math-17k's answer format"}),
    ("dr-grpo", ["max_completion_length=4000"],  # a 3000-token answer is no longer cut off: scored 1, not 0
     {"reward verifier on DigitalLearningGmbH/MATH-lighteval's answer format"}),
    # another template changes the text and, under the 1024-token cap, which prompts are kept
    ("dr-grpo", ["prompt_template=Problem: {prompt}"], {"prompt template: the text the model is given",
                                                         "data filter: the rows kept"}),
])
def test_mutations_fail_the_row_they_break(name, sets, broken):
    statuses = _statuses(name, sets)
    assert {check for check, status in statuses.items() if status == "FAIL"} == broken


def test_a_wrong_verifier_fails(tmp_path):
    """DAPO with TRL's accuracy_reward (LaTeX/boxed) instead of DAPO's Answer: verifier: the audit's bug."""
    text = recipes.locate("dapo").read_text(encoding="utf-8").replace("- name: dapo_accuracy", "- name: accuracy") \
        .replace("metric: {value: dapo_accuracy", "metric: {value: accuracy")
    path = tmp_path / "dapo-accuracy.yaml"
    path.write_text(text, encoding="utf-8")
    row = next(c for c in vp.verify_pipeline(str(path), []) if c.check.startswith("reward verifier"))
    assert row.status == "FAIL" and "'30 + 3 + 1 = 34.\\nAnswer: 34': paper 1, run -1" in row.note


def test_a_missing_prompt_cap_fails(monkeypatch):
    from paperrl import data as datamod

    monkeypatch.setattr(datamod, "drop_long_prompts", lambda data, tokenizer, max_tokens: data)
    for name in ("dr-grpo", "rloo"):
        assert _statuses(name)["data filter: the rows kept"] == "FAIL"


def test_verify_cli_exit_code(cli):
    result = cli("verify", "dr-grpo", "--set", "lr_scheduler_type=linear", "--format", "json")
    assert result.returncode == 1, result.stderr[-2000:]
    rows = {c["check"]: c for c in json.loads(result.stdout)["dr-grpo"]}
    assert rows[SCHEDULE]["status"] == "FAIL" and math.isfinite(rows[SCHEDULE]["max_abs_diff"])
    assert rows["prompt template: the text the model is given"]["status"] == "PASS"
