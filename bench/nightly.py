"""A whole nightly at a named shape, job by job with the DAG's arguments: wall time and peak RSS per stage.

    python bench/nightly.py --shape ml-1m|ml-20m|ml-25m [--config configs/default.yaml]
                            [--run-date 2026-11-22] [--format parquet|jsonl|csv] [--keep]
                            [--stages recommend evaluate] [--set k=v ...]

Generates the shape with the synthetic generator (users x items x interactions over `days`) into
`bench-data/<shape>/` and a lake `bench-lake/<shape>/` (both ignored by git; `--keep` reuses the data
and lake of an earlier run, without generating again), in the raw `--format` (default jsonl, the
default profile's, dirty rows included; parquet has none), then runs every stage of tables.STAGES as the DAG does: the same job
files and arguments (`--config --run-date --run-id --set ...`), Spark stages in a local session.
Peak RSS is that of the job's whole process tree (Python, the Spark driver JVM and its Python workers),
sampled every 0.5 s. A stage that fails stops the run; its exit code and log tail are printed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from genre_lib.lake.tables import STAGES  # noqa: E402

SHAPES = {  # users, items, interactions (MovieLens releases' sizes)
    "tiny": (400, 600, 30_000),
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-20m": (138_493, 26_744, 20_000_263),
    "ml-25m": (162_541, 62_423, 25_000_095),
    # bench/block_memory.py: one catalogue, 4x the users and interactions
    "users-1x": (20_000, 5_000, 2_000_000),
    "users-4x": (80_000, 5_000, 8_000_000),
}


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(cmd: list[str], log: Path) -> tuple[int, float, int]:
    """Exit code, wall seconds, peak RSS bytes of the process tree."""
    t0 = time.time()
    with log.open("w") as out:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        proc, peak = psutil.Process(p.pid), 0
        while p.poll() is None:
            peak = max(peak, tree_rss(proc))
            time.sleep(0.5)
    return p.returncode, time.time() - t0, peak


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--shape", choices=SHAPES, required=True)
    a.add_argument("--config", default="configs/default.yaml")
    a.add_argument("--run-date", default="2026-11-22")
    a.add_argument("--days", type=int, default=30)
    a.add_argument("--stages", nargs="+", default=list(STAGES))
    a.add_argument("--format", choices=("jsonl", "parquet", "csv"), default="jsonl", help="raw interaction files")
    a.add_argument("--keep", action="store_true", help="reuse the data and lake of an earlier run")
    a.add_argument("--set", dest="overrides", action="append", default=[])
    args = a.parse_args()

    users, items, n = SHAPES[args.shape]
    data, lake = ROOT / "bench-data" / args.shape, ROOT / "bench-lake" / args.shape
    logs = ROOT / "bench-lake" / f"{args.shape}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    sets = [f"data.path={data}", f"lake.root={lake}", f"data.synthetic.users={users}",
            f"data.synthetic.items={items}", f"data.synthetic.interactions={n}", f"data.synthetic.days={args.days}",
            f"data.synthetic.end_date={args.run_date}", f"data.synthetic.file_format={args.format}", "publish.sqlite_path=" + str(lake / "serving.db"),
            *args.overrides]
    flags = [x for s in sets for x in ("--set", s)]
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{lake}/mlflow.db")
    lake.mkdir(parents=True, exist_ok=True)
    if not args.keep:
        subprocess.run(["rm", "-rf", str(lake), str(data)], check=True)
        lake.mkdir(parents=True)
    py = sys.executable
    print(f"shape {args.shape}: {users:,} users x {items:,} items, {n:,} interactions over {args.days} days")
    print("| stage | wall s | peak RSS GB |\n|---|---|---|", flush=True)
    if not (args.keep and (data / "items.jsonl").exists()):
        rc, secs, peak = run([py, "-m", "genre_lib.datasets", "--config", args.config, *flags], logs / "generate.log")
        print(f"| (generate data) | {secs:.0f} | {peak / 2**30:.2f} |", flush=True)
        if rc:
            raise SystemExit(f"generation failed ({rc}): see {logs / 'generate.log'}")
    total, worst = 0.0, 0
    run_id = f"bench__{args.shape}__{time.strftime('%Y%m%dT%H%M%S')}"
    for stage in args.stages:
        cmd = [py, str(ROOT / "jobs" / f"{stage}.py"), "--config", args.config, "--run-date", args.run_date,
               "--run-id", run_id, *flags]
        rc, secs, peak = run(cmd, logs / f"{stage}.log")
        total, worst = total + secs, max(worst, peak)
        print(f"| {stage} | {secs:.0f} | {peak / 2**30:.2f} |", flush=True)
        if rc:
            tail = (logs / f"{stage}.log").read_text()[-3000:]
            raise SystemExit(f"{stage} failed with exit code {rc} after {secs:.0f} s:\n{tail}")
    print(f"| **total** | **{total:.0f}** ({total / 60:.1f} min) | **{worst / 2**30:.2f}** (max) |")


if __name__ == "__main__":
    main()
