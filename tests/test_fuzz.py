"""Fuzzing: random mutations of every shipped recipe and of --set values, through `paperrl run FILE --dry-run`.

Every outcome must be exit 0, or exit 2 with one `error:` line per problem: never a traceback, never
a hang. The suite runs a bounded number of examples; `make fuzz` (bench/fuzz.sh) runs many more.
"""

from __future__ import annotations

import os
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_in_process as _run
from paperrl import recipe as recipes

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
RECIPES = {name: recipes.read_raw(path) for name, path in recipes.available().items()}
TRIED = {"n": 0}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["1e-3", "sequence", "token", "group", "none", "dapo", "grpo", "ünïcødé✓", "${beta}",
                     "${nope}", "-1", "0", "1e309", "[1, 2]", "{a: 1}", "accuracy"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _apply(doc, path, op, value):
    if not path:
        return value if op == "set" else doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "set":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "extra" and isinstance(parent, dict):
        parent[f"extra_{last}"] = value
    return doc


@st.composite
def mutated_recipe(draw):
    name = draw(st.sampled_from(sorted(RECIPES)))
    doc = yaml.safe_load(yaml.safe_dump(RECIPES[name]))
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "non-mapping", "anchors", "raw-text"]))
    if kind == "non-mapping":
        return yaml.safe_dump(draw(st.one_of(scalars, st.lists(scalars, max_size=3))))
    if kind == "raw-text":
        return draw(st.text(max_size=80))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        doc = _apply(doc, path, draw(st.sampled_from(["set", "delete", "extra"])), draw(values))
        if not isinstance(doc, dict):
            break
    text = yaml.safe_dump(doc, allow_unicode=True)
    if kind == "anchors" and isinstance(doc, dict) and isinstance(doc.get("config"), dict) and doc["config"]:
        first = next(iter(doc["config"]))
        text += f"anchored: &a {{value: 1, source: s}}\nalias_user: *a\n"
        text = text.replace(f"  {first}:", f"  {first}: *a\n  {first}_orig:", 1) if "&a" in text else text
    return text


def run_in_process(argv) -> tuple[int, str, str]:
    result = _run(argv)
    return result.returncode, result.stdout, result.stderr


def _assert_clean(code, stderr):
    TRIED["n"] += 1
    assert code in (0, 2), (code, stderr[-2000:])
    if code == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert lines and all(line.startswith("error: ") for line in lines), stderr[-2000:]


@settings(max_examples=EXAMPLES, deadline=20000, suppress_health_check=list(HealthCheck), derandomize=True)
@given(text=mutated_recipe())
def test_mutated_recipe_files(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    code, _, err = run_in_process(["run", path, "--dry-run", "--format", "json"])
    _assert_clean(code, err)


trl_names = st.sampled_from(["learning_rate", "beta", "epsilon", "num_generations", "loss_type", "scale_rewards",
                             "per_device_train_batch_size", "max_steps", "gradient_accumulation_steps",
                             "steps_per_generation", "dynamic_sampling.max_rounds", "dynamic_sampling.metric",
                             "dynamic_sampling.enabled", "batch.completions_per_step", "rewards.accuracy.weight",
                             "callbacks.bema.update_freq", "exact_token_normaliser", "nope", "config.beta"])


@settings(max_examples=EXAMPLES, deadline=20000, suppress_health_check=list(HealthCheck), derandomize=True)
@given(recipe=st.sampled_from(sorted(RECIPES)), name=st.one_of(trl_names, st.text(max_size=12)),
       value=st.one_of(st.text(max_size=20), st.integers(-(10**20), 10**20).map(str), st.floats().map(str)))
def test_random_set_values(recipe, name, value):
    code, _, err = run_in_process([recipe, "--model", "m", "--dry-run", "--format", "json", "--set", f"{name}={value}"])
    _assert_clean(code, err)


@pytest.mark.parametrize("setting", ["batch.completions_per_step=100000000000", "max_steps=1e400",
                                     "per_device_train_batch_size=1000000000000", "batch.prompts_per_rollout=-1"])
def test_huge_and_negative_values_are_quick_errors(setting):
    code, _, err = run_in_process(["dapo", "--model", "m", "--dry-run", "--set", setting])
    assert code == 2 and err.startswith("error: ")


def test_report_number_of_cases():
    """Runs last in this file: the number of fuzz cases tried (read by bench/fuzz.sh)."""
    if TRIED["n"] == 0:
        pytest.skip("the fuzz tests ran in another worker (use --dist loadfile, as `make test` does)")
    print(f"\nFUZZ CASES TRIED: {TRIED['n']}")
    assert TRIED["n"] >= 2 * EXAMPLES * 0.9
