"""`--dry-run --format python`: a standalone plain-TRL script that trains exactly the resolved recipe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import dry, run_cli

ALL = ["alphapo", "bema", "dapo", "dpo", "dr-grpo", "gspo", "lite-ppo", "rloo"]


@pytest.mark.parametrize("name", ALL)
def test_exported_script_trains_and_matches_the_dry_run(cache_dir, tmp_path, name):
    out = tmp_path / "run"
    args = (name, "--max-steps", "2", "--output-dir", out)
    result = run_cli(*args, "--dry-run", "--format", "python")
    assert result.returncode == 0, result.stderr[-2000:]
    code = result.stdout
    assert "paperrl" not in "\n".join(line for line in code.splitlines() if line.startswith(("import", "from")))
    path = tmp_path / "train.py"
    path.write_text(code)
    namespace = {"__name__": "exported"}
    exec(compile(code, str(path), "exec"), namespace)  # top level only: config, rewards, data
    config_class = namespace[next(k for k in namespace if k.endswith("Config") and isinstance(namespace[k], type))]
    exported = json.loads(json.dumps(config_class(**namespace["CONFIG"]).to_dict(), default=str))
    assert exported == dry(*args)["config"]
    run = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "model" / "config.json").exists() or (out / "model" / "adapter_config.json").exists()
