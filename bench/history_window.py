"""Choose a profile's history window (`genres.lookback_days`) on validation, never on the test split.

    python bench/history_window.py [--config configs/default.yaml] [--windows 7 14 21 30 0] [--tolerance 0.01]

The profile's data (synthetic: generated in memory as bench/synthetic_quality.py does; movielens-100k:
the raw files, as bench/ml100k_quality.py reads them; any other source: the newest night of the
profile's lake, as the tuning DAG reads it) is split by the profile's eval.protocol into
train and test, and train again into inner-train and validation (the tuning DAG's carve). For each
window W (days up to the validation night; 0: every day) the ranker is fitted on the inner-train rows
inside the window and scored by tuning.metric on validation, with its fit-and-rank time. The choice:
the smallest window whose metric is within `--tolerance` (relative) of the best, so a night's cost
is bounded by the window and not by how many nights came before. The test split is not read.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from genre_lib.config.settings import load_config  # noqa: E402
from genre_lib.evaluation import tuning  # noqa: E402


def history(cfg):
    if cfg.data.format == "synthetic":
        from synthetic_quality import load
        return load(cfg)
    if cfg.data.format == "movielens-100k":
        from ml100k_quality import load

        from genre_lib.config.settings import resolve_path
        return load(Path(resolve_path(cfg.data.path)))
    # any other source: the profile's lake, as the tuning DAG reads it (run genre_nightly first)
    from genre_lib.evaluation.tuning import night_inputs

    inter, catalogue, _ = night_inputs(cfg, None)
    return inter, catalogue


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--windows", type=int, nargs="+", default=[7, 14, 21, 30, 0])
    p.add_argument("--tolerance", type=float, default=0.01)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    cfg = load_config(args.config, [*args.overrides, "genres.lookback_days=null"])
    inter, catalogue = history(cfg)
    inter = inter.assign(ts=pd.to_datetime(inter["ts"], utc=True))
    run_date = inter["ts"].max().date()
    problem = tuning.carve(inter, catalogue, cfg, run_date)
    night = problem.inner["ts"].max().date()  # the validation night: inner-train ends here
    problem = tuning.Problem(problem.train, problem.test, problem.inner, problem.val, catalogue, night)
    span = (night - problem.inner["ts"].min().date()).days + 1
    metric = cfg.tuning.metric
    print(f"{args.config}: protocol {tuning.protocol(cfg)}, inner-train {len(problem.inner)} rows over {span} days "
          f"up to {night}, validation {len(problem.val)} rows; {cfg.tuning.metric} on validation")
    print("| window (days) | inner rows | users | " + cfg.tuning.metric + " | seconds |\n|---|---|---|---|---|")
    rows = []
    for w in args.windows:
        start = pd.Timestamp(night, tz="UTC") - pd.Timedelta(days=w - 1) if w else None
        inner = problem.inner if start is None else problem.inner[problem.inner["ts"] >= start]
        t0 = time.perf_counter()
        (m,) = tuning.score(inner, problem.val, problem, cfg)
        secs = time.perf_counter() - t0
        value = float(m[metric])
        rows.append((w, value, secs))
        print(f"| {w or f'all ({span})'} | {len(inner)} | {inner['user_id'].nunique()} | {value:.4f} | {secs:.1f} |")
    best = max(v for _, v, _ in rows)
    ok = [w for w, v, _ in rows if w and v >= best * (1 - args.tolerance)]
    if not ok:
        print(f"best {best:.4f}: no window within {args.tolerance:.0%} of it; try longer --windows")
        return
    print(f"best {best:.4f}; smallest window within {args.tolerance:.0%}: {min(ok)} days -> "
          f"genres.lookback_days: {min(ok)}")


if __name__ == "__main__":
    main()
