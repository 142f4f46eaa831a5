"""Reports from real runs on the embedded default: report.png, overlays, markdown, bad input."""

from __future__ import annotations

import json

import pytest

from conftest import assert_user_error, metrics
from paperrl import report


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    from conftest import run_cli

    base = tmp_path_factory.mktemp("runs")
    for name in ("gspo", "lite-ppo", "dpo"):
        result = run_cli(name, "--max-steps", "8", "--output-dir", base / name)
        assert result.returncode == 0, result.stderr[-2000:]
    return base


def _panels(fig):
    return {ax.get_title(): ax for ax in fig.axes}


def test_every_run_leaves_a_report(runs):
    import matplotlib.image as mpimg

    png = runs / "gspo" / "report.png"
    assert png.exists() and mpimg.imread(png).shape[2] in (3, 4)
    assert json.loads((runs / "gspo" / "summary.json").read_text())["report"] == str(png)


def test_panels_follow_what_the_trainer_logged(runs):
    fig = report.build_figure([report.Run(runs / "gspo")])
    titles = set(_panels(fig))
    assert {"reward", "loss", "completion length", "clip ratios", "entropy", "learning rate"} <= titles
    assert "preference accuracy" not in titles and "dynamic sampling" not in titles
    assert "loss_type=grpo" in fig._suptitle.get_text()
    dpo = set(_panels(report.build_figure([report.Run(runs / "dpo")])))
    assert {"preference margins", "preference accuracy", "loss"} <= dpo and "clip ratios" not in dpo


def test_overlay_has_one_series_per_run(runs):
    fig = report.build_figure([report.Run(runs / "gspo"), report.Run(runs / "lite-ppo")])
    for title in ("loss", "entropy"):
        labels = [line.get_label() for line in _panels(fig)[title].lines]
        assert len(labels) == 2 and any(l.startswith("gspo") for l in labels) and any(l.startswith("lite-ppo") for l in labels)


def test_report_command_overlay_and_smoothing(cli, runs, tmp_path):
    out = tmp_path / "cmp.png"
    result = cli("report", runs / "gspo", runs / "lite-ppo", "--out", out, "--smooth", "0.8")
    assert result.returncode == 0, result.stderr
    assert out.exists()
    fig = report.build_figure([report.Run(runs / "gspo")], smooth=0.8)
    assert all("(EMA 0.8)" in line.get_label() for line in _panels(fig)["loss"].lines)


def test_markdown_numbers_equal_the_metrics_file(cli, runs):
    result = cli("report", runs / "gspo", "--format", "md")
    assert result.returncode == 0
    losses = [r["loss"] for r in metrics(runs / "gspo") if "loss" in r]
    row = next(line for line in result.stdout.splitlines() if "| loss |" in line)
    first, last, best = (float(x) for x in row.strip("|").split("|")[2:5])
    assert first == pytest.approx(losses[0], rel=1e-3) and last == pytest.approx(losses[-1], rel=1e-3)
    assert best == pytest.approx(min(losses), rel=1e-3)


def test_truncated_metrics_file(runs, tmp_path):
    import shutil

    copy = tmp_path / "cut"
    shutil.copytree(runs / "gspo", copy)
    text = (copy / "metrics.jsonl").read_text()
    (copy / "metrics.jsonl").write_text(text[: len(text) - 40])  # killed mid-line
    fig = report.build_figure([report.Run(copy)])
    assert "unreadable metrics line" in fig._suptitle.get_text()


def test_different_trainers_compared_with_a_note(runs):
    fig = report.build_figure([report.Run(runs / "gspo"), report.Run(runs / "dpo")])
    assert "different trainers" in fig._suptitle.get_text()


def test_bad_run_directories(cli, tmp_path):
    assert_user_error(cli("report", tmp_path), "no metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text("")
    assert_user_error(cli("report", tmp_path), "metrics.jsonl is empty")


def test_sparkline():
    assert report.sparkline([0, 1, 2, 3]) == "▁▃▆█"
    assert len(report.sparkline(list(range(100)), width=10)) == 10
