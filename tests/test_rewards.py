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


# One row of BytedTsinghua-SIA/DAPO-Math-17k as published: the prompt is a list of messages asking for a
# last line "Answer: $Answer", the answer sits in reward_model.ground_truth.
DAPO_PROMPT = ("Solve the following math problem step by step. The last line of your response should be of the form "
               "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{problem}\n\n"
               "Remember to put your answer on its own line after \"Answer:\".")


def dapo_math_row(problem: str, answer: str, index: int = 0) -> dict:
    return {"data_source": "math_dapo", "prompt": [{"content": DAPO_PROMPT.format(problem=problem), "role": "user"}],
            "ability": "MATH", "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": f"00000000-0000-0000-0000-{index:012d}"}}


def test_dapo_verifier_on_dapo_math_17k_rows(tmp_path, cache_dir):
    """`paperrl dapo --model M --dataset dapo-math.parquet`: the paper's verifier on the paper's answer format."""
    import pandas as pd

    from paperrl import data as datamod, recipe as recipes
    from paperrl.resolve import Options, resolve

    path = tmp_path / "dapo-math.parquet"
    pd.DataFrame([dapo_math_row("What is $6 \\times 7$?", "42"), dapo_math_row("Write one thousand.", "1000", 1)]) \
        .to_parquet(path)
    plan = resolve(recipes.load("dapo"), Options(model="m", dataset=str(path), output_dir="/tmp/unused"))
    data = datamod.load(plan)  # no --column: the recipe maps solution <- reward_model.ground_truth
    assert data["solution"] == ["42", "1000"]
    funcs, needs = rewards.build(plan.rewards)
    assert needs["dapo_accuracy"] == ["solution"]
    score = funcs[0]
    solution = [data[0]["solution"]] * 6 + [data[1]["solution"]]
    completions = [
        "6 times 7 is 42.\nAnswer: 42",  # the format the prompt asks for
        "answer: $42$",  # case and dollars are normalised away
        "First I thought Answer: 41, then I checked.\nAnswer: 42",  # the last Answer: line counts
        "The result is \\boxed{42}",  # no Answer: line: wrong, as in verl (TRL's accuracy_reward says right)
        "Answer: 41",
        "Answer: 42\n" + "I double-checked everything. " * 12,  # the Answer: line is outside the last 300 characters
        "Answer: 1,000",  # thousands separators
    ]
    assert score(completions=completions, solution=solution) == [1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0]
    chat = [[{"role": "assistant", "content": "Answer: 42"}]]
    assert score(completions=chat, solution=["42"]) == [1.0]
    trl_accuracy, _ = _one("accuracy", correct=1.0, wrong=-1.0)
    assert trl_accuracy(completions=["6 times 7 is 42.\nAnswer: 42"], solution=["42"]) == [-1.0]  # the audit's bug


@pytest.mark.parametrize("answer,truth", [("10 degrees", "10"), ("x = 3", "3"), ("\\frac12", "\\frac{1}{2}"),
                                          ("\\text{(B)}", "(B)"), ("\\sqrt2", "\\sqrt{2}"), ("5^\\circ", "5")])
def test_minerva_normalisation_makes_equal(answer, truth):
    assert rewards.minerva_normalise(answer) == rewards.minerva_normalise(truth)


def test_dr_grpo_truncated_answers_score_zero():
    """understand-r1-zero: 'Set zero reward for truncated outputs'; a completion filling the budget was cut off."""
    fn, needs = _one("accuracy", truncated=0.0, max_completion_len=4)
    assert needs == {"accuracy": ["solution"]}
    completions = ["$\\boxed{7}$", "$\\boxed{7}$", "$\\boxed{8}$"]
    assert fn(completions=completions, solution=["$7$"] * 3, completion_ids=[[1, 2, 3], [1, 2, 3, 4], [1]]) == \
        [1.0, 0.0, 0.0]
