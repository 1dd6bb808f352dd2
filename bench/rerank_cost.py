"""Cost of the learned second stage: the recommend stage's work with and without the re-ranker, timed
in one run on the same data.

    python bench/rerank_cost.py [--config configs/default.yaml] [--set data.synthetic.users=6040 ...]
                                [--repeat 1]

Default shape: ML-1M (synthetic generator, 6,040 users x 3,706 items, 1,000,000 rows), the profile's
other settings. Timed for each arm, as recommend.run does it after reading the lake: fit every scorer
on all rows, rank top_n per user, build the `recommendations` frame (reasons included). The
re-ranker arms add rerank.night and the re-ranked top_n (candidates, features, trees, reasons from
path contributions); rerank.enabled=on, so they always rank:
  - training night (rerank.retrain_days=1): split, first stage on the inner train, candidates,
    features, LightGBM training with early stopping, the auto decision, the model logged and
    registered in MLflow (a throwaway SQLite store in a temp folder);
  - reuse night (rerank.retrain_days=7, the night after): the version just registered, found and
    loaded from that store instead of training.
Not timed, the same for every arm: reading and writing the lake, the published genre weights
(computed here with genres.py's numpy twin). Item embeddings are random unit vectors of the
packaged encoder's width (384): the content scorer's cost, without embedding 3,706 texts first.
Prints the times and each ratio (target <= 2x).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


import synthetic_quality  # noqa: E402

from genre_lib.config.settings import load_config  # noqa: E402
from genre_lib.lake.catalogue import Catalogue  # noqa: E402
from genre_lib.ranking import model as ranker
from genre_lib.ranking import rerank  # noqa: E402
from genre_lib.ranking.interest import genre_weights  # noqa: E402

ML1M = ["data.synthetic.users=6040", "data.synthetic.items=3706", "data.synthetic.interactions=1000000"]


def load(cfg) -> tuple[pd.DataFrame, Catalogue]:
    inter, cat = synthetic_quality.load(cfg)  # the generator's own draws, clean rows only
    vec = np.random.default_rng(0).normal(size=(len(cat.items), 384)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    return inter, replace(cat, embeddings=pd.DataFrame({"item_id": cat.items["item_id"], "vector": list(vec)}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--repeat", type=int, default=1, help="time each arm this many times, report the best")
    args = p.parse_args()
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")  # as the pipeline runs (offline)
    cfg = load_config(args.config, [*ML1M, *args.overrides, "rerank.enabled=on"])
    rc = cfg.recommend
    t0 = time.time()
    inter, cat = load(cfg)
    run_date = pd.to_datetime(inter["ts"], utc=True).max().date()
    weights = genre_weights(inter, cat, cfg.genres, run_date)  # the published table: an input
    print(f"data: {inter['user_id'].nunique()} users x {inter['item_id'].nunique()} items, {len(inter)} rows "
          f"({time.time() - t0:.0f}s to generate); rerank: candidates {cfg.rerank.candidates}, threads "
          f"{cfg.rerank.threads}, max_train_users {cfg.rerank.max_train_users}; torch threads "
          f"{__import__('torch').get_num_threads()}; cores {os.cpu_count()}")

    def blend():
        model = ranker.fit(inter, cat, weights, rc, cfg.genres, cfg.clean.rating_max)
        return blend.recommendations_frame(model, blend.recommend(model, rc.weights, rc.top_n, rc.execution.block_users), rc), {}

    def reranked(days: int, night):
        c = cfg.model_copy(update={"rerank": cfg.rerank.model_copy(update={"retrain_days": days})})
        with mlflow.start_run():
            model = ranker.fit(inter, cat, weights, rc, cfg.genres, cfg.clean.rating_max)
            t = time.time()
            second, metrics = rerank.night(inter, cat, c, night)
            train_s = time.time() - t
            frame = blend.recommendations_frame(model, second.rank(model, inter, rc), rc)
        return frame, {"train_s": train_s, "reused": metrics["rerank_reused"], **second.decision}

    arms = (("blend", blend), ("rerank, training night", lambda: reranked(1, run_date)),
            ("rerank, reuse night", lambda: reranked(7, run_date + dt.timedelta(days=1))))
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        mlflow.set_experiment("rerank-cost")
        for name, fn in arms:
            best = None
            for _ in range(args.repeat):
                t = time.time()
                frame, info = fn()
                s = time.time() - t
                best = s if best is None else min(best, s)
            times[name] = best
            extra = "" if not info else (" (trees reused from the registry: {:.1f}s)".format(info["train_s"])
                                         if info["reused"] else
                                         f" (of which training {info['train_s']:.1f}s: {info['train_rows']} rows, "
                                         f"{info['train_users']} users, best iteration {info['best_iteration']})")
            print(f"{name}: {best:.1f}s, {len(frame)} rows{extra}")
    for name in list(times)[1:]:
        print(f"recommend stage, {name} / blend only: {times[name] / times['blend']:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
