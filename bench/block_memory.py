"""Does the ranking half's memory grow with users? recommend's and evaluate's peak RSS at one catalogue
(5,000 items) with 20,000 users / 2M rows and with 4x that (80,000 users / 8M rows), the second run
both in blocks of users (recommend.execution.user_block_rows, default 2M: four blocks) and, as the anchor, in one
block (the whole night in memory, as before user blocks). Each night runs job by job through
bench/nightly.py (generation and every upstream stage included; their figures are printed too).

    python bench/block_memory.py [--keep]

Prints, per stage, peak RSS GB at 1x, at 4x in blocks, at 4x in one block, and the ratios to 1x:
bounded by design means the 4x-in-blocks ratio stays near 1 while the one-block ratio grows.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| (\w+) \| (\d+) \| ([\d.]+) \|$")


def night(shape: str, *extra: str) -> dict[str, tuple[float, float]]:
    """stage -> (wall s, peak RSS GB) from one bench/nightly.py run, its table echoed."""
    cmd = [sys.executable, str(ROOT / "bench" / "nightly.py"), "--shape", shape, "--format", "parquet", *extra]
    print("$", " ".join(cmd[1:]), flush=True)
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print(out.stdout, flush=True)
    if out.returncode:
        raise SystemExit(f"{shape} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return {m.group(1): (float(m.group(2)), float(m.group(3))) for m in map(ROW.match, out.stdout.splitlines()) if m}


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--keep", action="store_true", help="reuse both lakes (only recommend and evaluate run again)")
    args = a.parse_args()
    again = ["--keep", "--stages", "recommend", "evaluate"] if args.keep else []
    small = night("users-1x", *again)
    blocked = night("users-4x", *again)
    whole = night("users-4x", "--keep", "--stages", "recommend", "evaluate", "--set", "recommend.execution.user_block_rows=1000000000")
    print("| stage | 1x GB | 4x in blocks GB (ratio) | 4x in one block GB (ratio) |\n|---|---|---|---|")
    for stage in ("recommend", "evaluate"):
        one, four, anchor = small[stage][1], blocked[stage][1], whole[stage][1]
        print(f"| {stage} | {one:.2f} | {four:.2f} ({four / one:.2f}x) | {anchor:.2f} ({anchor / one:.2f}x) |")


if __name__ == "__main__":
    main()
