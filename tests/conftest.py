"""Shared fixtures: an isolated cache with the embedded tiny model, and the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # two workers on two cores: no oversubscription

# One embedded tiny model for every test process (built once, in seconds, offline; atomic, so workers may race).
os.environ["PAPERRL_CACHE"] = os.environ.get("PAPERRL_TEST_CACHE") or str(ROOT / "build" / "test-cache")


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    path = Path(os.environ["PAPERRL_CACHE"])
    from paperrl import demo

    demo.ensure_model()
    return path


def run_in_process(argv) -> subprocess.CompletedProcess:
    """The CLI in this process: for dry runs, which load no model (a subprocess costs seconds of imports)."""
    import contextlib
    import io

    from paperrl import cli

    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["paperrl", *map(str, argv)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def run_cli(*args, cwd=None, env=None, timeout=600, input=None) -> subprocess.CompletedProcess:
    if "--dry-run" in map(str, args) and cwd is None and env is None:
        return run_in_process(args)
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
