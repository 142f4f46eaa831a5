"""--help, --version, list, show, diff and cp never import torch, transformers or trl."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, run_in_process


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["list"], ["list", "--all"], ["show", "dapo"],
                                  ["diff", "gspo", "dapo"], ["gspo", "--help"]])
def test_no_heavy_imports(argv):
    # the fast paths (no typer parsing) skip pydantic too: ~0.1 s of import and schema building
    heavy = ("torch", "transformers", "trl") + (() if "--help" in argv else ("pydantic",))
    code = ("import sys; sys.argv = ['paperrl', *%r]\n"
            "from paperrl.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "heavy = [m for m in %r if m in sys.modules]\n"
            "print('HEAVY', heavy)") % (argv, heavy)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_show_lists_value_source_and_trl_default(cli):
    out = cli("show", "gspo").stdout
    assert "importance_sampling_level" in out and "'sequence'" in out and "'token'" in out  # TRL default
    assert "GSPO Eq. 7" in out
    assert "rule: steps_per_generation = 4 × gradient_accumulation_steps" in out


def test_show_marks_unsourced_values_as_gaps():
    """Values that matter but that the recipe leaves unsourced are gaps, not silently TRL's default."""
    lines = {line.split()[0]: line for line in run_in_process(["show", "lite-ppo"]).stdout.splitlines() if line.strip()}
    for name in ("lr_scheduler_type", "warmup_steps"):
        assert " gap " in lines[name] and "the recipe states no source" in lines[name]
    assert " gap " not in lines["learning_rate"]  # sourced: the paper's 1e-6


def test_list_shows_all_recipes(cli):
    out = cli("list").stdout
    for name in ("gspo", "dapo", "dr-grpo", "dpo", "rloo", "alphapo", "bema", "lite-ppo"):
        assert name in out


def test_diff(cli):
    out = cli("diff", "gspo", "dapo").stdout
    assert "config.importance_sampling_level" in out and "sequence" in out
    assert "config.epsilon_high" in out and "0.28" in out


def test_cp_then_run_the_copy(cli, tmp_path):
    target = tmp_path / "my-dapo.yaml"
    result = cli("cp", "dapo", target)
    assert result.returncode == 0 and target.read_text().startswith("# DAPO")
    again = cli("cp", "dapo", target)
    assert again.returncode == 2 and "already exists" in again.stderr
    target.write_text(target.read_text().replace("epsilon_high: {value: 0.28", "epsilon_high: {value: 0.3"))
    import json

    out = json.loads(cli("run", target, "--model", "m", "--dry-run", "--format", "json").stdout)
    assert out["config"]["epsilon_high"] == 0.3


def test_show_prints_trl_defaults_as_values():
    out = run_in_process(["show", "dpo"]).stdout
    assert "default_optim" not in out  # transformers' variable name, not its value
    assert "'adamw_torch" in out or "'rmsprop'" in out


def test_show_and_diff_validate_a_users_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "recipes/grpo/gspo.yaml").read_text().replace("epsilon_high:", "epsilon_hihg:"))
    for argv in (["show", bad], ["diff", "gspo", bad]):
        result = run_in_process(argv)
        assert result.returncode == 2 and "epsilon_hihg" in result.stderr and "did you mean 'epsilon_high'" in result.stderr


def test_trl_defaults_are_kept_on_disk(tmp_path, monkeypatch):
    from paperrl import catalog
    from paperrl.kinds import KINDS
    from paperrl.trl_fields import config_fields

    monkeypatch.setenv("PAPERRL_CACHE", str(tmp_path))
    first = catalog.trl_defaults("grpo")
    assert first == {k: repr(v[0]) for k, v in config_fields(KINDS["grpo"].config_class).items()}
    (cached,) = (tmp_path / "trl-defaults").glob("grpo-*.json")
    cached.write_text('{"epsilon": "from the cache"}')
    assert catalog.trl_defaults("grpo") == {"epsilon": "from the cache"}
