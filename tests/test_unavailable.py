"""The Paper Index entries the installed TRL cannot train: listed with their reason, refused with it (exit 2);
and the recipes' layout: recipes/<family>/<name>.yaml, found by name."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from paperrl import catalog

UNAVAILABLE = catalog.unavailable()
CENSUS = ["nash-md", "prm", "xpo", "minillm", "ssd", "ppo", "bco-unpaired", "loo-denoiser"]


def test_the_census_entries_are_listed():
    assert set(CENSUS) <= set(UNAVAILABLE)
    for name, entry in UNAVAILABLE.items():
        assert {"title", "arxiv", "section", "family", "reason"} <= set(entry) <= {
            "title", "arxiv", "section", "family", "reason", "absent", "year", "status"}, name
        assert entry.get("status", "unavailable") in ("unavailable", "option")
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name)
        assert re.fullmatch(r"\d{4}\.\d{5}", entry["arxiv"]) or (entry["arxiv"] == "" and entry["year"]), name
    assert not set(UNAVAILABLE) & set(catalog.available())  # an entry is a recipe or a reason, never both


@pytest.mark.parametrize("name", [name for name, entry in UNAVAILABLE.items() if "absent" in entry])
def test_the_reason_holds_for_the_installed_trl(name):
    """What each reason says is missing is missing from the installed TRL: an upgrade that brings one back fails
    here, by name, and the entry should become a recipe."""
    trl_dir = Path(importlib.util.find_spec("trl").origin).parent
    assert not (trl_dir / UNAVAILABLE[name]["absent"]).exists()


def test_list_all_shows_each_entry_with_its_reason(cli):
    plain = cli("list")
    result = cli("list", "--all")
    assert result.returncode == 0 and "nash-md" not in plain.stdout
    flat = " ".join(result.stdout.split())
    for name in catalog.available():
        assert f" {name} " in plain.stdout and f" {name} " in result.stdout
    options = [name for name, entry in UNAVAILABLE.items() if entry.get("status") == "option"]
    assert options == ["lora", "dora", "zero"]
    assert (f"{len(catalog.available())} recipes, {len(UNAVAILABLE) - 3} entries the installed TRL cannot train, "
            "3 options of every recipe") in flat
    for name, entry in UNAVAILABLE.items():
        assert re.search(rf"{entry['family']} +{name} .* {entry.get('status', 'unavailable')}", result.stdout), name
        assert " ".join(entry["reason"].split()[:4]) in flat, name


def test_list_by_family(cli):
    grpo = cli("list", "--family", "grpo")
    assert grpo.returncode == 0
    lines = grpo.stdout.splitlines()[1:-1]
    rows = [line.split() for line in lines if line.split()[0] == "grpo"]  # the others continue a long title
    assert rows and all(line.startswith("      ") for line in lines if line.split()[0] != "grpo")
    assert {row[1] for row in rows} == {n for n, p in catalog.available().items() if p.parent.name == "grpo"}
    years = [int(row[-2]) for row in rows if row[-2].isdigit()]
    assert years == sorted(years)  # by year within the family
    bad = cli("list", "--family", "grp")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --family grp: no such family (did you mean 'grpo'?)")


@pytest.mark.parametrize("argv", [["nash-md"], ["nash-md", "--dry-run"], ["ppo", "--model", "m"], ["show", "xpo"],
                                  ["verify", "minillm"], ["cp", "prm", "/tmp/paperrl-never-written.yaml"]])
def test_running_an_entry_is_exit_2_with_one_line_saying_why(cli, argv):
    result = cli(*argv)
    name = next(a for a in argv if a in UNAVAILABLE)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {name}: ")
    assert "cannot be trained with the installed TRL" in result.stderr
    assert UNAVAILABLE[name]["reason"] in result.stderr
    assert not Path("/tmp/paperrl-never-written.yaml").exists()


def test_an_option_entry_says_which_option_to_use(cli):
    result = cli("dora", "--model", "m")
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: dora: DoRA: Weight-Decomposed Low-Rank Adaptation (arXiv 2402.09353, "
                                    "Paper Index: PEFT) is an option of every recipe, not a recipe: ")
    assert "--lora-r RANK --dora" in result.stderr


def test_recipes_live_in_family_folders_named_by_their_trainer():
    files = sorted(catalog.RECIPE_DIR.rglob("*.yaml"))
    assert len(files) == len(catalog.available())  # no two recipes share a name
    for path in files:
        assert path.parent.parent == catalog.RECIPE_DIR
        assert catalog.read_raw(path)["trainer"] == path.parent.name, path
        assert catalog.read_raw(path)["name"] == path.stem


# The Paper Index's 72 entries (shared/reference/paper-index-census.md, in the page's order) -> what `paperrl list
# --all` shows for each: one or more recipes, or an entry with its reason.
PAPER_INDEX = [
    "grpo", "deepseek-r1", "gspo", "gmpo", "dapo", "demystifying", "intellect-2", "skywork-or1", "80-20", "dr-grpo",
    "lite-ppo", "tis", "mis", "sequence-is", "scalerl", "2-grpo", "sapo", "deepseek-v3.2", "gdpo", "luspo", "vespo",
    "a-star-po", "dpo", "slic-hf", "rso", "f-dpo", "ipo", "exo", "nca", "robust-dpo", "bco-pair bco-unpaired",
    "tr-dpo", "iterative-rpo", "sppo", "rpo", "aot aot-unpaired", "discopop", "wpo", "apo-zero apo-down", "ld-dpo",
    "mpo", "tulu3-dpo", "kto", "bema", "dft", "bfd-packing", "t5-packing", "loo-denoiser", "lora", "dora", "rloo",
    "reinforce-pp", "orpo", "cpo", "simpo", "alphapo", "tpo tpo-l", "nash-md", "prm", "reward-centering",
    "llama2-margin", "online-dpo", "xpo", "gkd", "iw-opd", "on-policy-distillation", "minillm", "sdpo", "sdft", "ssd",
    "zero", "ppo",
]


def test_every_paper_index_entry_is_a_recipe_or_listed_with_its_reason(cli):
    assert len(PAPER_INDEX) == 72
    names = [name for entry in PAPER_INDEX for name in entry.split()]
    assert sorted(names) == sorted({*catalog.available(), *UNAVAILABLE})  # each shown once, nothing else
    runnable = [entry for entry in PAPER_INDEX if any(n in catalog.available() for n in entry.split())]
    assert len(runnable) >= 60  # the bar: >= 57 entries, 60 with RSO, Iterative RPO and SPPO
    listed = cli("list", "--all").stdout
    assert all(re.search(rf"^ \S+ +{re.escape(name)} ", listed, re.M) for name in names)
