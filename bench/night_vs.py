"""This checkout's nightly against another revision's, on the same machine in the same run: the
stages' total wall time of `bench/nightly.py --shape SHAPE` in each, alternated, and the ratio.

    python bench/night_vs.py --baseline 374c7be [--shape tiny] [--repeats 2]

The baseline is checked out as a git worktree under bench-data/ (ignored by git) and run with this
checkout's .venv; each repeat runs baseline then this checkout, each on a fresh lake and the same
generated data. Prints each total, the medians and `ratio` = this / baseline (< 1.05: within 5%).
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def total_seconds(tree: Path, shape: str) -> float:
    out = subprocess.run([sys.executable, "bench/nightly.py", "--shape", shape], cwd=tree, capture_output=True,
                         text=True, check=True).stdout
    return float(re.search(r"\*\*total\*\* \| \*\*(\d+(?:\.\d+)?)\*\*", out).group(1))


def main() -> int:
    a = argparse.ArgumentParser()
    a.add_argument("--baseline", required=True, help="a git revision")
    a.add_argument("--shape", default="tiny")
    a.add_argument("--repeats", type=int, default=2)
    args = a.parse_args()
    base = ROOT / "bench-data" / f"baseline-{args.baseline}"
    if not base.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=ROOT, check=True,
                       capture_output=True)
    if not (base / ".venv").exists():
        (base / ".venv").symlink_to(ROOT / ".venv")
    times: dict[str, list[float]] = {"baseline": [], "this": []}
    for n in range(args.repeats):
        for name, tree in (("baseline", base), ("this", ROOT)):
            times[name].append(total_seconds(tree, args.shape))
            print(f"repeat {n + 1}: {name} {times[name][-1]:.0f} s", flush=True)
    b, t = statistics.median(times["baseline"]), statistics.median(times["this"])
    print(f"median total: baseline {args.baseline} {b:.0f} s, this checkout {t:.0f} s; ratio {t / b:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
