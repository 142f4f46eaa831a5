"""`paperrl reproduce`: the decision rule, the claim files' schema, the JSON contract, and one real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from paperrl import reproduce
from paperrl.errors import PaperrlError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
CLAIM_KEYS = {"paper", "id", "claim", "toy", "task", "arms", "metric", "rule", "steps", "seeds", "tuning_seeds",
              "values", "differences", "effect", "interval", "verdict", "runs", "figure"}


def paperrl(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paperrl", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=300)


# ---------------------------------------------------------------- the decision rule


@pytest.mark.parametrize("treatment, control, expect, verdict", [
    ([0.50, 0.61, 0.55], [0.10, 0.20, 0.12], "higher", "reproduced"),
    ([0.50, 0.61, 0.55], [0.10, 0.20, 0.12], "lower", "not reproduced"),
    ([0.10, 0.20, 0.12], [0.50, 0.61, 0.55], "lower", "reproduced"),
    ([0.10, 0.20, 0.12], [0.50, 0.61, 0.55], "higher", "not reproduced"),
    ([0.50, 0.20, 0.60], [0.40, 0.45, 0.41], "higher", "inconclusive"),
    ([0.3, 0.3], [0.3, 0.3], "higher", "inconclusive"),
])
def test_decision_rule_verdicts(treatment, control, expect, verdict):
    assert reproduce.decide(treatment, control, expect)["verdict"] == verdict


def test_decision_rule_is_a_paired_t_interval():
    # differences 1.9, 2.0, 2.1: mean 2, sd 0.1, se 0.1/sqrt(3), t(0.975, df 2) = 4.303
    out = reproduce.decide([2.9, 4.0, 5.1], [1.0, 2.0, 3.0], "higher")
    half = 4.303 * 0.1 / 3 ** 0.5
    assert out["differences"] == pytest.approx([1.9, 2.0, 2.1])
    assert out["effect"] == pytest.approx(2.0)
    assert out["interval"] == pytest.approx([2.0 - half, 2.0 + half])


def test_t_quantiles():
    assert reproduce.t975(1) == 12.706 and reproduce.t975(2) == 4.303
    assert reproduce.t975(11) == 2.228  # the nearest smaller df: conservative
    assert reproduce.t975(100) == 2.042  # df 30's, never the normal's 1.96


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": 1, "entropy": 1.0}, {"step": 2, "entropy": 2.0, "rewards/margins": 0.5},
            {"step": 3, "entropy": 4.0, "rewards/margins": 0.3}, {"step": 3, "train_runtime": 1.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text(json.dumps({"eval": {"after": 0.75}}))
    (run / "paperrl.json").write_text(json.dumps({"config": {"beta": 0.1}}))
    return run


@pytest.mark.parametrize("metric, value", [
    ({"file": "metrics.jsonl", "key": "entropy"}, 7 / 3),
    ({"file": "metrics.jsonl", "key": "entropy", "from_step": 2}, 3.0),
    ({"file": "metrics.jsonl", "key": "entropy", "reduce": "last"}, 4.0),
    ({"file": "metrics.jsonl", "key": "rewards/margins", "divide_by": "beta"}, 4.0),
    ({"file": "summary.json", "key": "eval.after"}, 0.75),
])
def test_metric_read_from_the_run(tmp_path, metric, value):
    assert reproduce.read_metric(_run_dir(tmp_path), reproduce.Metric(name="m", **metric)) == pytest.approx(value)


def test_smoke_runs_read_the_same_share_of_steps():
    [claim] = reproduce.load(reproduce.available()["dapo"])  # entropy from step 61 of 120
    assert reproduce.scaled_metric(claim, claim.steps) == claim.metric
    assert reproduce.scaled_metric(claim, 4).from_step == 3
    assert reproduce.scaled_metric(claim, 1).from_step == 1


def test_metric_never_logged_is_one_line(tmp_path):
    with pytest.raises(PaperrlError, match="no 'kl' logged from step 1"):
        reproduce.read_metric(_run_dir(tmp_path), reproduce.Metric(name="m", file="metrics.jsonl", key="kl"))


# ---------------------------------------------------------------- claim files


def test_shipped_claim_files_load():
    files = reproduce.available()
    assert files, "no claim file shipped"
    for name, path in files.items():
        for claim in reproduce.load(path):
            assert claim.arms.treatment.name != claim.arms.control.name
            assert not set(claim.tuning_seeds) & set(reproduce.reporting_seeds(claim.seeds))


def test_claim_files_ship_in_the_wheel():
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(reproduce.__file__).parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["paperrl"]
    for path in reproduce.available().values():
        assert any(fnmatch.fnmatch(str(path.relative_to(root / "paperrl")), p) for p in patterns), path


def _claim_file(tmp_path: Path, **change) -> Path:
    """The shipped GSPO claim file with top-level keys of its first claim replaced (None: removed)."""
    raw = yaml.safe_load(reproduce.available()["gspo"].read_text())
    for key, value in change.items():
        raw["claims"][0].pop(key, None)
        if value is not None:
            raw["claims"][0][key] = value
    file = tmp_path / "gspo.yaml"
    file.write_text(yaml.safe_dump(raw))
    return file


@pytest.mark.parametrize("change, field", [
    ({"metric": None}, "claims.0.metric: required key is missing"),
    ({"seed": 3}, "claims.0.seed: unknown key"),
    ({"id": "Clip Fraction"}, "claims.0.id: 'Clip Fraction'; accepted: lower-case letters"),
    ({"tuning_seeds": [2, 100]}, "claims.0.tuning_seeds: [2] are also reporting seeds"),
    ({"task": "demo:sums"}, "claims.0.task: 'demo:sums'; accepted: 'demo:addition'"),
    ({"rule": {"statistic": "paired_mean_difference", "interval": 0.95, "expect": "up"}},
     "claims.0.rule.expect: Input should be 'higher' or 'lower'"),
    ({"arms": {"treatment": {"name": "gspo"}, "control": {"name": "grpo", "set": ["epsilom=0.2"]}}},
     "claims.0.arms.control.set: error: --set epsilom: unknown name (did you mean 'epsilon'?)"),
])
def test_claim_file_errors_name_the_field(tmp_path, change, field):
    file = _claim_file(tmp_path, **change)
    with pytest.raises(PaperrlError) as exc:
        reproduce.load(file)
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(f"{file}: ")
    assert field.replace("error: ", "") in exc.value.problems[0]


def test_shared_runs_need_two_metric_keys(tmp_path):
    file = _claim_file(tmp_path, arms={"treatment": {"name": "gspo"}, "control": {"name": "again"}})
    with pytest.raises(PaperrlError, match="claims.0.arms: the same --set and the same metric key"):
        reproduce.load(file)


def test_arms_with_the_same_set_are_the_same_runs(tmp_path, monkeypatch):
    """BEMA's shape: one run per seed, read twice (the average and the raw iterate), trained once."""
    [claim] = reproduce.load(reproduce.available()["bema"])
    assert reproduce.shares_runs(claim) and claim.arms.control.key == "eval.raw_iterate"
    trained = []

    def fake_train(command, run_dir):
        seed = int(command[command.index("--set") + 1].removeprefix("seed="))
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps({"eval": {"after": 0.5 + seed / 10, "raw_iterate": 0.5}}))
        trained.append(run_dir)

    monkeypatch.setattr(reproduce, "_train", fake_train)
    report = reproduce.reproduce([("bema", claim)], tmp_path, seeds=2, max_steps=2)
    [result] = report["claims"]
    assert len(trained) == 2 and all(d.parent.name == claim.arms.treatment.name for d in trained)
    treatment, control = claim.arms.treatment.name, claim.arms.control.name
    assert result["runs"][treatment] == result["runs"][control] == [str(d) for d in trained]
    assert result["values"] == {treatment: pytest.approx([0.6, 0.7]), control: [0.5, 0.5]}
    assert result["differences"] == pytest.approx([0.1, 0.2])
    assert result["arms"]["control"]["key"] == "eval.raw_iterate" and "key" not in result["arms"]["treatment"]


def test_claim_file_error_through_the_cli(tmp_path):
    file = _claim_file(tmp_path, metric=None)
    done = paperrl("reproduce", file, "--output-dir", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {file}: claims.0.metric: required key is missing"]
    assert not (tmp_path / "out").exists()  # checked before anything runs


@pytest.mark.parametrize("args, message", [
    ((), "name one PAPER or pass --all"),
    (("gspo", "--all"), "name one PAPER or pass --all"),
    (("gpso",), "no claim file for 'gpso' (did you mean 'gspo'?)"),
    (("gspo", "--seeds", "1"), "--seeds 1: expected an integer >= 2"),
    (("gspo", "--format", "yaml"), "--format yaml: accepted: table, json"),
])
def test_usage_errors(args, message):
    done = paperrl("reproduce", *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_non_empty_output_dir_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    done = paperrl("reproduce", "gspo", "--output-dir", tmp_path)
    assert done.returncode == 2 and "not empty; pass --overwrite" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# ---------------------------------------------------------------- a real reproduction


def test_reproduce_end_to_end(tmp_path):
    """2 seeds x 2 arms of GSPO's claim, 3 steps each, through the real CLI: the JSON contract, the run
    directories behind every value, and the figure."""
    out = tmp_path / "repro"
    done = paperrl("reproduce", "gspo", "--seeds", "2", "--max-steps", "3", "--jobs", "2", "--format", "json",
                   "--output-dir", out)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert json.loads((out / "reproduce.json").read_text()) == report
    [claim] = report["claims"]
    assert CLAIM_KEYS <= set(claim)
    assert claim["claim"].startswith('"') and "§5.3" in claim["claim"]
    assert claim["seeds"] == [1, 2] and claim["steps"] == 3 and claim["tuning_seeds"]
    assert claim["verdict"] in reproduce.VERDICTS
    assert set(claim["arms"]) == {"treatment", "control"}
    names = [claim["arms"]["treatment"]["name"], claim["arms"]["control"]["name"]]
    assert list(claim["values"]) == names and list(claim["runs"]) == names
    metric = reproduce.Metric(**claim["metric"])
    for name in names:
        assert len(claim["values"][name]) == 2
        for seed, run, value in zip(claim["seeds"], claim["runs"][name], claim["values"][name]):
            run = Path(run)
            config = json.loads((run / "paperrl.json").read_text())
            assert config["seed"] == seed and config["config"]["max_steps"] == 3
            assert json.loads((run / "summary.json").read_text())["status"] == "completed"
            assert reproduce.read_metric(run, metric) == value  # every value traced to its run
    control = json.loads((Path(claim["runs"][names[1]][0]) / "paperrl.json").read_text())["config"]
    assert control["importance_sampling_level"] == "token" and control["epsilon"] == 0.2
    assert reproduce.decide(*claim["values"].values(), claim["rule"]["expect"])["effect"] == claim["effect"]
    assert Path(claim["figure"]).stat().st_size > 10_000
    assert "[4/4]" in done.stderr  # progress while it runs
