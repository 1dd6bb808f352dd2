"""Cost of the learned second stage: the recommend stage's work with and without the re-ranker, timed
in one run on the same data.

    python bench/rerank_cost.py [--config configs/default.yaml] [--set data.synthetic.users=6040 ...]
                                [--repeat 1]

Default shape: ML-1M (synthetic generator, 6,040 users x 3,706 items, 1,000,000 rows), the profile's
other settings. Timed for each arm, as recommend.run does it after reading the lake: fit every scorer
on all rows, rank top_n per user, build the `recommendations` frame (reasons included). The
re-ranker arm adds rerank.night (split, first stage on the inner train, candidates, features,
LightGBM training with early stopping, the auto decision; rerank.enabled=on so it always ranks) and
the re-ranked top_n (candidates, features, trees, pred_contrib reasons). Not timed, the same for both:
reading and writing the lake, the published genre weights (computed here with genres.py's numpy
twin). Item embeddings are random unit vectors of the packaged encoder's width (384): the content
scorer's cost, without embedding 3,706 texts first. Prints both times and the ratio (target <= 2x).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genre_lib import recommend as rec  # noqa: E402
from genre_lib import rerank  # noqa: E402
from genre_lib.catalogue import Catalogue  # noqa: E402
from genre_lib.config import load_config  # noqa: E402
from genre_lib.datasets import synthetic  # noqa: E402

ML1M = ["data.synthetic.users=6040", "data.synthetic.items=3706", "data.synthetic.interactions=1000000"]


def load(cfg) -> tuple[pd.DataFrame, Catalogue]:
    sc = cfg.data.synthetic
    rng = np.random.default_rng(sc.seed)  # the generator's own draws, clean rows only
    items = synthetic.make_items(sc, rng)
    inter = synthetic.make_interactions(sc, items, rng).drop(columns="ds")
    scores = items[["item_id", "genres"]].explode("genres").dropna().rename(columns={"genres": "genre"})
    scores = scores.assign(probability=1.0)[["item_id", "genre", "probability"]]
    vec = np.random.default_rng(0).normal(size=(len(items), 384)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    emb = pd.DataFrame({"item_id": items["item_id"], "vector": list(vec)})
    return inter, Catalogue(items=items[["item_id", "title", "genres"]], item_genre_scores=scores, embeddings=emb)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--repeat", type=int, default=1, help="time each arm this many times, report the best")
    args = p.parse_args()
    cfg = load_config(args.config, [*ML1M, *args.overrides, "rerank.enabled=on"])
    rc = cfg.recommend
    t0 = time.time()
    inter, cat = load(cfg)
    run_date = pd.to_datetime(inter["ts"], utc=True).max().date()
    weights = rerank.genre_weights(inter, cat, cfg.genres, run_date)  # the published table: an input
    print(f"data: {inter['user_id'].nunique()} users x {inter['item_id'].nunique()} items, {len(inter)} rows "
          f"({time.time() - t0:.0f}s to generate); rerank: candidates {cfg.rerank.candidates}, threads "
          f"{cfg.rerank.threads}, max_train_users {cfg.rerank.max_train_users}; torch threads "
          f"{__import__('torch').get_num_threads()}; cores {os.cpu_count()}")

    def blend():
        model = rec.fit(inter, cat, weights, rc, cfg.genres, cfg.clean.rating_max)
        return rec.recommendations_frame(model, rec.recommend(model, rc.weights, rc.top_n, rc.block_users), rc), {}

    def reranked():
        model = rec.fit(inter, cat, weights, rc, cfg.genres, cfg.clean.rating_max)
        t = time.time()
        second, metrics = rerank.night(inter, cat, cfg, run_date, rec.FIRST_STAGE)
        train_s = time.time() - t
        frame = rec.recommendations_frame(model, second.rank(model, inter, rc), rc)
        return frame, {"train_s": train_s, **second.decision}

    times = {}
    for name, fn in (("blend", blend), ("rerank", reranked)):
        best = None
        for _ in range(args.repeat):
            t = time.time()
            frame, info = fn()
            s = time.time() - t
            best = s if best is None else min(best, s)
        times[name] = best
        extra = (f" (of which training {info['train_s']:.1f}s: {info['train_rows']} rows, {info['train_users']} "
                 f"users, best iteration {info['best_iteration']})") if info else ""
        print(f"{name}: {best:.1f}s, {len(frame)} rows{extra}")
    print(f"recommend stage with the re-ranker / without: {times['rerank'] / times['blend']:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
