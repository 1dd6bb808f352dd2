"""Offline evaluation of the ranker: split a history by `eval.protocol`, fit every scorer on the
training part only, rank the blend, each scorer alone, each ablation and popularity for the test users,
and score them (metrics.py). The evaluate stage runs it over the night's user blocks."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Callable, Optional

import numpy as np
import pandas as pd

from genre_lib.evaluation import ab_eval
from genre_lib.evaluation.scratch import Scratch
from genre_lib.lake.catalogue import Catalogue
from genre_lib.orchestration import progress
from genre_lib.protocol.metrics import ranking_metrics, spark_ranking_metrics
from genre_lib.protocol.splits import cold_item_split, cold_items, new_items, split
from genre_lib.ranking import blend, rerank
from genre_lib.ranking import model as ranker
from genre_lib.ranking.interest import genre_totals, genre_weights, item_genres_pandas


def compared_models(weights: dict, available: dict) -> dict[str, dict]:
    """name -> weights: the blend, each available scorer alone, and the blend without each one
    (skipped where that leaves nothing or equals another model)."""
    used = {c: w for c, w in weights.items() if w > 0 and available.get(c)}
    blends = {"blend": dict(used)}
    for c in ("genre", "content", "cf", "popularity"):
        if available.get(c):
            blends[c] = {c: 1.0}
    if len(used) > 1:
        for c in used:
            rest = {d: w for d, w in used.items() if d != c}
            blends[f"blend-{c}"] = rest
    return blends


class _OneBlock:
    """A history in memory as one block (the UserBlocks interface: n, frame(b))."""
    n = 1

    def __init__(self, frame: pd.DataFrame):
        self._frame = frame

    def frame(self, b: int) -> pd.DataFrame:
        return self._frame


def evaluate(interactions: pd.DataFrame, catalogue: Catalogue, cfg, **kw) -> dict:
    """evaluate_blocks on `interactions` as one block of users."""
    return evaluate_blocks(_OneBlock(interactions), catalogue, cfg, **kw)


def evaluate_blocks(blocks, catalogue: Catalogue, cfg, *, item_genres: Optional[pd.DataFrame] = None,
                    spark=None, run_date: Optional[dt.date] = None,
                    rescore: Optional[Callable[[np.ndarray], pd.DataFrame]] = None,
                    rank_remote: Optional[Callable] = None, scratch: Optional[Scratch] = None, cold_fold: int = 0) -> dict:
    """Split by cfg.eval.protocol, fit every scorer on the training split only (the genre weights
    with genres.py's numpy twin, anchored at `run_date`, default the last interaction's day), rank
    every model for the test users with training items removed, score with the Spark metrics
    when `spark` is given (else the numpy reference). Returns the metrics.json payload.

    `blocks` (n, frame(b)) holds the history in blocks of users (user_blocks.py): each protocol splits
    a user's rows alone (stratified splits each block's items), so the night splits block by block;
    the item side is fit over every block's training rows, then each block's users are fit, ranked
    and their rows handed on (to `scratch`'s parquet files with Spark), one block in memory at a time.
    The re-ranker's trees and the A/B intervals are trained on the first block's users.

    cold_items: the items of item fold `cold_fold` are cold (cold_eval.py runs every fold);
    `rescore(cold ids)` gives item_genre_scores from a classifier that never saw the cold items'
    labels; every model ranks the cold items only, beside a seeded `random` and `genre-labels`
    (the genre scorer given the cold items' true labels: the classifier's ceiling).

    `rank_remote(model, blends, users, candidates, k) -> (Spark frame of (model, user_id, item_id,
    rank), done)` ranks the blends elsewhere (recommend.execution.engine=spark: `remote_ranker`)."""
    ec, k, rc, gc = cfg.eval, cfg.eval.k, cfg.recommend, cfg.genres
    if blocks.n > 1 and run_date is None:
        raise ValueError("evaluate in blocks needs the run date (the genre weights' decay anchor)")
    cold = labels = None
    if ec.protocol == "cold_items":
        if rescore is None:
            raise ValueError("eval.protocol=cold_items needs the classifier rescored without the cold items' labels")
        seen_items = np.unique(np.concatenate([blocks.frame(b)["item_id"].astype(str).unique() for b in range(blocks.n)]))
        cold = cold_items(seen_items, ec.cold_item_share, ec.seed, cold_fold)  # the rule cold_item_split applies per block
        labels = None if catalogue.items is None else item_genres_pandas(catalogue.items, "full").rename(
            columns={"score": "probability"})  # the true labels, 1 per (item, genre)
        catalogue = replace(catalogue, item_genre_scores=rescore(cold))

    def split_block(b: int) -> tuple[pd.DataFrame, pd.DataFrame]:  # (train, held-out) of block b, deterministic
        df = blocks.frame(b)
        return cold_item_split(df, ec.cold_item_share, ec.seed, cold_fold)[:2] if cold is not None else split(
            df, ec.protocol, ec.holdout_share, ec.seed)

    if blocks.n == 1:
        one = split_block(0)
        split_block = lambda b: one  # noqa: E731  (split once)
    memberships = None if catalogue.items is None else item_genres_pandas(catalogue.items, gc.multi_genre)
    totals = None  # the shrinkage prior over every block's training rows
    if blocks.n > 1 and gc.shrinkage > 0 and memberships is not None:
        for b in range(blocks.n):
            t = genre_totals(split_block(b)[0], memberships, gc, run_date)
            totals = t if totals is None else totals.add(t, fill_value=0.0)

    def weights_of(train: pd.DataFrame) -> Optional[pd.DataFrame]:
        return genre_weights(train, catalogue, gc, run_date, totals)

    side = ranker.fit_items(lambda: (split_block(b)[0] for b in range(blocks.n)), catalogue, rc, cfg.clean.rating_max)
    if item_genres is None and catalogue.item_genre_scores is not None:
        item_genres = catalogue.item_genre_scores.rename(columns={"probability": "score"})
    item_users = pd.DataFrame({"item_id": side.item_ids, "users": side.item_users})
    candidates = None if cold is None else np.flatnonzero(pd.Index(side.item_ids).isin(set(cold)))
    blends = compared_models(rc.weights.model_dump(), side.available)
    if cold is not None:  # the ablations are moot where cf and popularity are blind
        blends = {n: w for n, w in blends.items() if not n.startswith("blend-")}
        if side.available.get("genre") and labels is not None:
            blends["genre-labels"] = {"genre": 1.0}
        blends["random"] = {}

    rows: dict = {}  # model (or "truth") -> parts of the rows the metrics read
    remote, dones = [], []
    first_block = None  # (train, held, model): what the A/B intervals are measured on
    counts = {"train_rows": 0, "test_rows": 0, "n_train_users": 0}
    decision = None
    try:  # `dones` remove what rank_remote left in the lake, whatever happens next
        # the learned second stage, trained on a split of the first block's training rows; auto may drop it
        rankers = {}
        if cold is None and cfg.rerank.enabled != "off":
            rankers, decision = rerank.evaluation_fit(split_block(0)[0], catalogue, cfg, run_date)
        blends.update({name: dict(blends["blend"]) for name in rankers})  # what it re-orders: the blend's top M

        def keep(name: str, frame: pd.DataFrame, b: int) -> None:  # name: "truth" or "model-<model>"
            if scratch is not None and spark is not None:
                scratch.frame(frame, name, part=b)
            else:
                rows.setdefault(name, []).append(frame)

        for b in range(blocks.n):
            train, held = split_block(b)
            model = ranker.fit_users(side, train, weights_of(train), rc, gc, cfg.clean.rating_max)
            if b == 0 and cfg.ab.variants:
                first_block = (train, held, model)
            test = new_items(held, train)  # a no-op for ML-100k, where each user rates an item once
            users = np.flatnonzero(pd.Index(model.user_ids).isin(test["user_id"].unique()))
            counts["train_rows"] += len(train)
            counts["test_rows"] += len(test)
            counts["n_train_users"] += model.n_users
            progress.report("user blocks", b, blocks.n, users=counts["n_train_users"], train_rows=counts["train_rows"])
            keep("truth", test[["user_id", "item_id"]], b)
            ranked = {}
            plain = {n: w for n, w in blends.items() if n not in rankers and n not in ("genre-labels", "random")}
            if rank_remote is not None:  # recommend.execution.engine=spark: the blends ranked on the executors
                frame, done = rank_remote(model, plain, users, candidates, k)
                remote.append(frame)
                dones.append(done)
            else:
                ranked = {name: (model, top) for name, top in blend.recommend_many(
                    model, plain, k, rc.execution.block_users, users=users, candidates=candidates).items()}
            if "genre-labels" in blends:
                s, has, _ = ranker.item_genre_matrix(labels, model.item_ids, rc.genre.gamma, model.genres)
                truth = ranker.with_item_genres(model, s, has)
                ranked["genre-labels"] = (truth, blend.recommend(truth, {"genre": 1.0}, k, rc.execution.block_users,
                                                               users=users, candidates=candidates))
            if "random" in blends:
                keep("model-random", random_recs(model.user_ids[users], model.item_ids[candidates], k,
                                                        ec.seed + b + 1000 * cold_fold), b)
            for name, frame in rerank.evaluation_rank(rankers, model, train, users, cfg).items():
                keep(f"model-{name}", frame, b)
            for name, (m, top) in ranked.items():
                keep(f"model-{name}", top.frame(m), b)
            del model, ranked, train, held, test
        extra = dict(n_catalogue=side.n_items if cold is None else len(candidates), n_train_users=counts["n_train_users"])
        models = _scored(blends, rows, remote, scratch, spark, k, item_genres, item_users, extra)
    finally:
        for done in dones:
            done()
    # models holds metric values only, so a reader can iterate them; each model's blend weights sit apart
    payload = {"primary": "rerank" if "rerank" in rankers else "blend", "protocol": ec.protocol, "k": k,
               "variants": blends, "train_rows": counts["train_rows"], "test_rows": counts["test_rows"], "models": models}
    if blocks.n > 1:
        payload["user_blocks"] = blocks.n
    if decision is not None:
        payload["rerank_decision"] = decision
    if cold is not None:
        payload["cold_items"] = int(len(candidates))
    if cfg.ab.variants:  # each A/B variant on its own test users, with intervals (genre_lib/evaluation/ab_eval.py)
        fit = lambda rows, rc: ranker.fit_split(rows, catalogue, cfg, run_date, rc, totals)  # noqa: E731
        train, held, model = first_block
        payload["variants_ab"] = ab_eval.variants_ab(train, held, cfg, fit, model if blocks.n == 1 else None, cold,
                                                     rankers.get("rerank"))
    return payload


def _scored(blends: dict, rows: dict, remote: list, scratch, spark, k: int, item_genres, item_users, extra) -> dict:
    """Each model's metrics from its ranked rows (held in `rows`, or in `scratch`'s parquet files, or
    in the `remote` Spark frames), numpy's reference without Spark."""
    if spark is None:
        test = pd.concat(rows["truth"], ignore_index=True)
        return {name: ranking_metrics(test, pd.concat(rows[f"model-{name}"], ignore_index=True), k, item_genres=item_genres,
                                      item_users=item_users, **extra) for name in blends}
    from functools import reduce

    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    def put(frame: pd.DataFrame, name: str):
        return spark.createDataFrame(frame) if scratch is None else scratch.frame(frame, name)

    def kept(name: str):  # the parts `keep` handed on: one model's rows at a time in the driver's heap
        return spark.createDataFrame(pd.concat(rows[name], ignore_index=True)) if scratch is None else scratch.read(name)

    s_truth = kept("truth").cache()
    try:
        s_users = put(item_users, "item_users")
        s_genres = None if item_genres is None else put(item_genres[["item_id", "genre", "score"]], "item_genres")
        ranked_remote = reduce(DataFrame.unionByName, remote) if remote else None
        models = {}
        for name in blends:
            key = f"model-{name}"
            local = scratch.has(key) if scratch is not None else key in rows
            recs = (kept(key) if local else ranked_remote.where(F.col("model") == name).drop("model"))
            models[name] = spark_ranking_metrics(s_truth, recs, k, item_users=s_users, item_genres=s_genres, **extra)
        return models
    finally:
        s_truth.unpersist()


def random_recs(user_ids: np.ndarray, item_ids: np.ndarray, k: int, seed: int) -> pd.DataFrame:
    """A seeded uniform draw of k candidates per user: the floor every model must clear."""
    rng = np.random.default_rng(seed)
    k = min(k, len(item_ids))
    picks = np.stack([rng.choice(len(item_ids), k, replace=False) for _ in user_ids]) if len(user_ids) else np.zeros((0, k), int)
    return pd.DataFrame({"user_id": np.repeat(user_ids, k), "item_id": item_ids[picks.ravel()],
                         "rank": np.tile(np.arange(1, k + 1), len(user_ids))})
