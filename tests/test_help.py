"""Help pages read like the field's tools: each recipe is its paper, metavars say what to type, --version."""

from __future__ import annotations

import re

import pytest

from conftest import run_in_process

from paperrl import catalog


def test_each_recipe_is_listed_as_its_paper():
    out = run_in_process(["--help"]).stdout
    recipes_section = out.split("Recipes")[1].split("Commands:")[0]
    flat = "".join(recipes_section.split())  # long titles wrap, also inside a hyphenated word (LD-DPO)
    for name, path in catalog.available().items():
        raw = catalog.read_raw(path)
        assert "".join(f"{name} {raw['title']} ({catalog.cite(raw)})".split()) in flat
    assert re.search(r"^  gspo +Group Sequence Policy Optimization", out, re.M)
    for command in ("list", "show", "cp", "diff", "run", "verify", "doctor"):
        assert re.search(rf"^  {command} +\S", out.split("Commands:")[1], re.M), command


@pytest.mark.parametrize("metavar", ["--model ID|DIR", "--dataset ID|FILE|DIR", "--set NAME=VALUE",
                                     "--column NAME=COLUMN", "--reward MODULE:FUNCTION[=WEIGHT]",
                                     "--format [table|json|yaml|python]", "--vllm [colocate|server]",
                                     "--num-processes N", "--accelerate-config NAME|FILE"])
def test_recipe_options_say_what_to_type(metavar):
    out = run_in_process(["dapo", "--help"]).stdout
    assert metavar in out
    assert "<str>" not in out and "<int>" not in out and "list[str]" not in out


def test_recipe_help_opens_with_the_paper():
    out = run_in_process(["rloo", "--help"]).stdout
    assert "(arXiv 2402.14740)" in out and "paperrl show rloo" in out


@pytest.mark.parametrize("argv", [["--version"], ["--version", "list"]])
def test_version(argv):
    result = run_in_process(argv)
    assert result.returncode == 0
    line = result.stdout.strip()
    assert re.fullmatch(r"paperrl \S+ \(TRL \S+, transformers \S+, torch \S+, accelerate \S+; Python \S+\)", line), line


def test_usage_errors_are_click_style_not_internal_errors():
    result = run_in_process(["gspo", "--no-such-option"])
    assert result.returncode == 2
    assert "No such option" in result.stderr and "internal error" not in result.stderr
