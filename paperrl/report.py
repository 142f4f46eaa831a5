"""Run reports: report.png (one panel per metric family), runs overlaid, markdown tables, sparklines."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from paperrl.errors import PaperrlError

# (panel title, metric keys or prefixes ending in '/*'); a panel is drawn when the run logged any of them.
FAMILIES = [
    ("reward", ["reward", "rewards/*/mean"]),
    ("loss", ["loss"]),
    ("KL", ["kl"]),
    ("completion length", ["completions/mean_length", "completions/min_length", "completions/max_length"]),
    ("truncated completions", ["completions/clipped_ratio"]),
    ("clip ratios", ["clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"]),
    ("entropy", ["entropy"]),
    ("dynamic sampling", ["dynamic_sampling/fraction_kept", "dynamic_sampling/rounds"]),
    ("preference margins", ["rewards/margins", "rewards/chosen", "rewards/rejected"]),
    ("preference accuracy", ["rewards/accuracies"]),
    ("gradient norm", ["grad_norm"]),
    ("learning rate", ["learning_rate"]),
]
_SPARK = "▁▂▃▄▅▆▇█"


class Run:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        path = self.folder / "metrics.jsonl"
        if not path.exists():
            raise PaperrlError(f"{folder}: no metrics.jsonl here (not a paperrl run directory, or it has not logged yet)")
        self.rows, self.skipped = [], 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                self.skipped += 1  # a line cut by a killed run
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
                self.rows.append(row)
        record = self.folder / "paperrl.json"
        try:
            self.record = json.loads(record.read_text()) if record.exists() else {}
        except json.JSONDecodeError:
            self.record = {}
        self.label = f"{self.record.get('recipe', self.folder.name)} ({self.folder.name})"

    @property
    def trainer(self):
        return self.record.get("trainer")

    def keys(self) -> set[str]:
        return {k for row in self.rows for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}

    def series(self, key: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for row in self.rows:
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                xs.append(row["step"])
                ys.append(float(value))
        return xs, ys


def _expand(patterns: list[str], keys: set[str]) -> list[str]:
    out = []
    for pattern in patterns:
        if "*" in pattern:
            head, tail = pattern.split("*")
            out += sorted(k for k in keys if k.startswith(head) and k.endswith(tail))
        elif pattern in keys:
            out.append(pattern)
    return out


def _ema(values: list[float], alpha: float) -> list[float]:
    out, current = [], None
    for v in values:
        current = v if current is None else alpha * current + (1 - alpha) * v
        out.append(current)
    return out


def build_figure(runs: list[Run], smooth: float = 0.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = set().union(*(r.keys() for r in runs))
    panels = [(title, _expand(patterns, keys)) for title, patterns in FAMILIES]
    panels = [(t, ks) for t, ks in panels if ks]
    if not panels:
        raise PaperrlError(", ".join(str(r.folder) for r in runs) + ": metrics.jsonl holds no metric to plot yet")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.remove()
    for ax, (title, metric_keys) in zip(axes.flat, panels):
        for run in runs:
            for key in metric_keys:
                xs, ys = run.series(key)
                if not xs:
                    continue
                label = key if len(runs) == 1 else f"{run.label}: {key}"
                if smooth:
                    ys, label = _ema(ys, smooth), f"{label} (EMA {smooth})"
                ax.plot(xs, ys, label=label, linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(_title(runs), fontsize=10)
    fig.tight_layout()
    return fig


def _title(runs: list[Run]) -> str:
    parts = []
    for run in runs:
        config = run.record.get("config", {})
        keys = ("loss_type", "learning_rate", "beta", "epsilon", "epsilon_high", "scale_rewards",
                "importance_sampling_level")
        settings = ", ".join(f"{k}={config[k]}" for k in keys if k in config)
        parts.append(f"{run.label}  model {Path(str(run.record.get('model', '?'))).name}  {settings}")
    kinds = {r.trainer for r in runs if r.trainer}
    if len(kinds) > 1:
        parts.append(f"note: runs of different trainers ({', '.join(sorted(kinds))}): each panel shows what each logged")
    skipped = sum(r.skipped for r in runs)
    if skipped:
        parts.append(f"note: {skipped} unreadable metrics line(s) skipped (a run killed mid-write)")
    return "\n".join(parts)


def write_png(runs: list[Run], out: Path, smooth: float = 0.0) -> Path:
    import matplotlib.pyplot as plt

    fig = build_figure(runs, smooth)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out


def markdown(runs: list[Run]) -> str:
    lines = ["| run | metric | first | last | best |", "|---|---|---|---|---|"]
    for run in runs:
        keys = [k for _, patterns in FAMILIES for k in _expand(patterns, run.keys())]
        for key in dict.fromkeys(keys):
            _, ys = run.series(key)
            if ys:
                best = min(ys) if key in ("loss", "grad_norm", "kl") or key.endswith("length") else max(ys)
                lines.append(f"| {run.label} | {key} | {ys[0]:.4g} | {ys[-1]:.4g} | {best:.4g} |")
    return "\n".join(lines)


def sparkline(values: list[float], width: int = 40) -> str:
    if not values:
        return ""
    if len(values) > width:  # the mean of `width` equal chunks
        chunks = [values[i * len(values) // width:(i + 1) * len(values) // width] for i in range(width)]
        values = [sum(c) / len(c) for c in chunks if c]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(_SPARK[min(len(_SPARK) - 1, int((v - lo) / span * (len(_SPARK) - 1) + 0.5))] for v in values)


def sparklines(rows: list[dict], keys=("reward", "loss", "completions/mean_length", "entropy", "kl",
                                      "rewards/accuracies", "dynamic_sampling/fraction_kept")) -> list[tuple[str, str]]:
    """(metric, sparkline) for the key curves a run logged, for the terminal summary."""
    out = []
    for key in keys:
        ys = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if len(ys) > 1:
            out.append((key, f"{sparkline(ys)}  {ys[0]:.3g} -> {ys[-1]:.3g}"))
    return out


def main(run_dirs: list[Path], out: Path | None, fmt: str, smooth: float) -> int:
    if fmt not in ("png", "md"):
        raise PaperrlError(f"--format {fmt}: accepted: png, md")
    if not 0 <= smooth < 1:
        raise PaperrlError(f"--smooth {smooth}: accepted: a number in [0, 1), 0 is off")
    runs = [Run(d) for d in run_dirs]
    if not any(r.rows for r in runs):
        raise PaperrlError(", ".join(str(d) for d in run_dirs) + ": metrics.jsonl is empty")
    if fmt == "md":
        sys.stdout.write(markdown(runs) + "\n")
        return 0
    target = out or (runs[0].folder / "report.png" if len(runs) == 1 else Path("report.png"))
    write_png(runs, target, smooth)
    print(f"wrote {target}")
    return 0
