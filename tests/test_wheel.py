"""A wheel built from the tree ships the recipes and works from any directory."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile

from conftest import ROOT


def test_wheel_installs_into_a_fresh_venv_and_lists_recipes(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("paperrl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "paperrl/recipes/grpo/dapo.yaml" in names and "paperrl/unavailable.yaml" in names and "paperrl/cli.py" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    # the fresh venv has paperrl only; its dependencies come from this environment's site-packages
    # (a PYTHONPATH entry: its .pth files, the editable install among them, are not processed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages())}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([venv / "bin" / "paperrl", "list"], cwd=elsewhere, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "dapo" in result.stdout and "lite-ppo" in result.stdout
    where = subprocess.run([venv / "bin" / "python", "-c", "import paperrl; print(paperrl.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True).stdout
    assert str(venv) in where  # the installed wheel, not the source tree
