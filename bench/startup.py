"""Start-up of paperrl's instant commands, side by side with `trl --help` (goal: show and diff under 0.3 s).

    python bench/startup.py [--rounds N]      writes bench/STARTUP.md

Each round runs every command once, in turn (interleaved, so that a busy moment of a shared machine
hits all of them alike); the table gives the median wall time and its ratio to `trl --help`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
GOAL_S = 0.3
COMMANDS = [
    ["python", "-c", "pass"],
    ["trl", "--help"],
    ["paperrl", "--help"],
    ["paperrl", "--version"],
    ["paperrl", "list"],
    ["paperrl", "show", "gspo"],
    ["paperrl", "diff", "gspo", "dapo"],
    ["paperrl", "gspo", "--help"],
]


def wall(argv: list[str]) -> float:
    exe = sys.executable if argv[0] == "python" else str(BIN / argv[0])
    start = time.perf_counter()
    subprocess.run([exe, *argv[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def measure(rounds: int) -> dict[str, list[float]]:
    """Wall times of every command, `rounds` interleaved rounds after one warm-up round."""
    times: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
    for c in COMMANDS:  # warm the file cache once
        wall(c)
    for _ in range(rounds):
        for c in COMMANDS:
            times[" ".join(c)].append(wall(c))
    return times


def table(times: dict[str, list[float]]) -> list[str]:
    median = {name: statistics.median(ts) for name, ts in times.items()}
    trl = median["trl --help"]
    return ["| command | median (s) | fastest (s) | median / `trl --help` | under 0.3 s |", "|---|---|---|---|---|",
            *[f"| `{name}` | {m:.3f} | {min(times[name]):.3f} | {m / trl:.2f} | {'yes' if m < GOAL_S else 'no'} |"
              for name, m in median.items()]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("STARTUP.md"))
    args = parser.parse_args()
    times = measure(args.rounds)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = "\n".join([
        "# Start-up: paperrl's instant commands against `trl --help`",
        "",
        f"Command: `python bench/startup.py --rounds {args.rounds}`. Machine: {platform.platform()}, "
        f"{os.cpu_count()} CPUs (shared; load average {load:.1f} at the end), Python {platform.python_version()}. "
        f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}.",
        "",
        f"{args.rounds} interleaved rounds (each round runs every command once, in turn); median and fastest wall "
        f"time of the whole process; goal: under {GOAL_S} s. On a loaded machine every process is slowed alike: "
        "read the ratio to `trl --help`.",
        "",
        *table(times),
        "",
    ])
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
