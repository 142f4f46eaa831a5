"""Shared fixtures: an isolated cache with the embedded tiny model, and the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One embedded tiny model for the whole session (built in seconds, offline)."""
    path = Path(os.environ.get("PAPERRL_TEST_CACHE") or tmp_path_factory.mktemp("paperrl-cache"))
    os.environ["PAPERRL_CACHE"] = str(path)
    from paperrl import demo

    demo.ensure_model()
    return path


def run_cli(*args, cwd=None, env=None, timeout=600, input=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                **(env or {})}
    full_env.pop("PAPERRL_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "paperrl", *map(str, args)], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, input=input)


@pytest.fixture
def cli(cache_dir):
    return run_cli


def dry(*args) -> dict:
    result = run_cli(*args, "--dry-run", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_user_error(result, *fragments):
    """Exit code 2, no traceback, and a message naming what is wrong."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
