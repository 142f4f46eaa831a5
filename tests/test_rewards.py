"""Each named reward, the user's rewards, and a failing reward."""

from __future__ import annotations

import pytest

from conftest import assert_user_error
from paperrl import rewards
from paperrl.errors import PaperrlError


def _one(name, **args):
    funcs, needs = rewards.build([{"name": name, "args": args, "weight": 1.0}])
    return funcs[0], needs


def test_accuracy_uses_math_verify_on_text_and_chat():
    fn, needs = _one("accuracy")
    assert needs == {"accuracy": ["solution"]}
    assert fn(completions=["The answer is $\\frac{1}{2}$", "$3$"], solution=["$\\frac{1}{2}$", "$4$"]) == [1.0, 0.0]
    chat = [[{"role": "assistant", "content": "$\\boxed{7}$"}]]
    assert fn(completions=chat, solution=["$7$"]) == [1.0]


def test_accuracy_on_dapo_scale():
    fn, _ = _one("accuracy", correct=1.0, wrong=-1.0)
    assert fn(completions=["The answer is $2$", "The answer is $3$"], solution=["$2$", "$2$"]) == [1.0, -1.0]


def test_answer_match():
    fn, needs = _one("answer_match")
    assert needs == {"answer_match": ["solution"]}
    assert fn(completions=["12", " 13 apples", "x"], solution=["12", "12", "1"]) == [1.0, 0.0, 0.0]


def test_soft_overlong_punishment_paper_values():
    fn, _ = _one("soft_overlong_punishment", max_completion_len=20480, soft_punish_cache=4096)
    ids = [[0] * 16384, [0] * 18432, [0] * 20480, [0] * 30000]
    assert fn(completion_ids=ids) == pytest.approx([0.0, -0.5, -1.0, -1.0])


def test_think_format_and_repetition():
    fn, _ = _one("think_format")
    assert fn(completions=["<think>\nhm\n</think>\nok", "no"]) == [1.0, 0.0]
    rep, _ = _one("repetition_penalty", ngram_size=2)
    assert rep(completion_ids=[[1, 2, 3, 4], [5, 5, 5, 5, 5]]) == [0.0, -0.75]


def test_user_reward_from_module_and_file(tmp_path):
    fn, needs = rewards.build([{"name": "tests.rewards_for_tests:length_reward", "args": {}, "weight": 1.0}])
    assert fn[0](completions=["abc"]) == [3.0] and needs == {"length_reward": []}
    path = tmp_path / "r.py"
    path.write_text("def score(completions, label, **kw):\n    return [1.0 for _ in completions]\n")
    fn, needs = rewards.build([{"name": f"{path}:score", "args": {}, "weight": 1.0}])
    assert needs == {"score": ["label"]}


def test_unknown_rewards():
    with pytest.raises(PaperrlError, match="did you mean 'accuracy'"):
        _one("acuracy")
    with pytest.raises(PaperrlError, match="has no function 'nope'"):
        rewards.build([{"name": "tests.rewards_for_tests:nope", "args": {}, "weight": 1.0}])


def test_failing_user_reward_stops_with_name_and_sample(cli, tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def explode(completions, **kw):\n    raise ValueError('cannot score this')\n")
    out = tmp_path / "run"
    result = cli("gspo", "--max-steps", "3", "--reward", f"{path}:explode", "--output-dir", out)
    assert_user_error(result, "reward function 'explode' raised ValueError: cannot score this", "prompt '")
    assert (out / "paperrl.json").exists()


def test_reward_weights_reach_trl(cli):
    import json

    out = json.loads(cli("gspo", "--reward", "tests.rewards_for_tests:length_reward=0.5", "--dry-run",
                         "--format", "json").stdout)
    assert out["config"]["reward_weights"] == [1.0, 0.5]
