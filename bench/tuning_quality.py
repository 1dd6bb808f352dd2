"""genre_tuning's search against the hand-tuned profile, and TPE against random search.

    python bench/tuning_quality.py --config configs/movielens-100k.yaml [--ds 1998-04-22]
                                   [--trials 60] [--seeds 0 1 2] [--samplers tpe random]
                                   [--set key=value ...]

Reads a committed night of the profile's lake, as jobs/tune.py does. Each (sampler, seed) study
searches the profile's `tuning.space` (the shipped profiles declare none: config_experiments.DEFAULT_SPACE), so
every tuned key is drawn afresh and the hand-tuned values play no part; it runs `--trials` trials on
the validation split carved from the training split, and scores its best trial on the test split once. The hand-tuned profile
(`--config` itself) is scored on the same test split by the same code, as the anchor. Studies are
in-memory here (their MLflow runs go to a temporary store), so nothing is resumed by accident.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from genre_lib.config.settings import load_config, with_values  # noqa: E402
from genre_lib.evaluation import tuning  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True, help="the hand-tuned profile (its lake and data)")
    p.add_argument("--ds", default=None, help="the night to tune on (default: the newest in the lake)")
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samplers", nargs="+", default=["tpe", "random"])
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="tuning-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    hand = load_config(args.config, args.overrides)
    history, catalogue, day = tuning.night_inputs(hand, args.ds)
    problem = tuning.carve(history, catalogue, hand, day)
    metric = hand.tuning.metric
    print(f"{args.config} night {day}: protocol {tuning.protocol(hand)}, train {len(problem.train)} rows "
          f"(inner {len(problem.inner)}, validation {len(problem.val)}), test {len(problem.test)} rows")
    t0 = time.time()
    anchor = tuning.score(problem.train, problem.test, problem, hand)[0][metric]
    anchor_val = tuning.score(problem.inner, problem.val, problem, hand)[0][metric]
    print(f"hand-tuned profile: validation {metric} {anchor_val:.4f}, test {metric} {anchor:.4f} "
          f"({time.time() - t0:.1f}s for both)")

    rows = []
    for sampler in args.samplers:
        for seed in args.seeds:
            cfg = with_values(hand, {"tuning.sampler": sampler, "tuning.seed": seed, "tuning.n_trials": args.trials,
                                       "tuning.storage": f"sqlite:///{tmp}/optuna-{sampler}-{seed}.db",
                                       "tuning.study_name": f"bench-{sampler}-{seed}"})
            t = time.time()
            s = tuning.run_study(cfg, args.config, problem)
            rows.append((sampler, seed, s[f"val_{metric}"], s["test"][metric], s["complete"], time.time() - t))
            print(f"  {sampler:6s} seed {seed}: best validation {metric} {rows[-1][2]:.4f}, its test {rows[-1][3]:.4f} "
                  f"({rows[-1][4]} complete of {s['trials']}, {rows[-1][5]:.0f}s)", flush=True)
    print(f"\n| sampler | trials | mean best validation {metric} | mean test {metric} | test - hand-tuned |")
    print("|---|---|---|---|---|")
    for sampler in args.samplers:
        r = [x for x in rows if x[0] == sampler]
        val, test = np.mean([x[2] for x in r]), np.mean([x[3] for x in r])
        print(f"| {sampler} | {args.trials} | {val:.4f} (sd {np.std([x[2] for x in r]):.4f}) | "
              f"{test:.4f} (sd {np.std([x[3] for x in r]):.4f}) | {test - anchor:+.4f} |")
    print(f"| hand-tuned ({args.config}) | - | {anchor_val:.4f} | {anchor:.4f} | 0 |")


if __name__ == "__main__":
    main()
