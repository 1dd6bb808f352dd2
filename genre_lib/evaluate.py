"""Stage evaluate: split the night's history by `eval.protocol`, fit every scorer on the training
part only, rank the blend, each scorer alone, each ablation and popularity for the test users, and
score them (metrics.py); metrics.json in the lake, the same plus charts and a report in MLflow."""
from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import replace
from typing import Callable, Optional

import numpy as np
import pandas as pd

from genre_lib import ab_eval
from genre_lib import recommend as rec
from genre_lib import rerank, spark_rank
from genre_lib.catalogue import Catalogue
from genre_lib.datasets.source import source_for
from genre_lib.metrics import METRICS, ranking_metrics, spark_ranking_metrics
from genre_lib.genres import item_genres_pandas, user_genre_weights_pandas
from genre_lib.html_report import log_report
from genre_lib.splits import cold_item_split, new_items, split
from genre_lib.tables import read_history_pandas


def model_variants(weights: dict, available: dict) -> dict[str, dict]:
    """name -> weights: the blend, each available scorer alone, and the blend without each one
    (skipped where that leaves nothing or equals another variant)."""
    used = {c: w for c, w in weights.items() if w > 0 and available.get(c)}
    variants = {"blend": dict(used)}
    for c in ("genre", "content", "cf", "popularity"):
        if available.get(c):
            variants[c] = {c: 1.0}
    if len(used) > 1:
        for c in used:
            rest = {d: w for d, w in used.items() if d != c}
            variants[f"blend-{c}"] = rest
    return variants


def evaluate(interactions: pd.DataFrame, catalogue: Catalogue, cfg, *, item_genres: Optional[pd.DataFrame] = None,
             spark=None, run_date: Optional[dt.date] = None,
             rescore: Optional[Callable[[np.ndarray], pd.DataFrame]] = None,
             rank_remote: Optional[Callable] = None, to_spark: Optional[Callable] = None) -> dict:
    """Split by cfg.eval.protocol, fit every scorer on the training split only (the genre weights
    with genres.py's numpy twin, anchored at `run_date`, default the last interaction's day), rank
    every variant for the test users with training items removed, score with the Spark metrics
    when `spark` is given (else the numpy reference). Returns the metrics.json payload.

    cold_items: `rescore(cold ids)` gives item_genre_scores from a classifier that never saw the
    cold items' labels; every variant ranks the cold items only, beside a seeded `random` and
    `genre-labels` (the genre scorer given the cold items' true labels: the classifier's ceiling).

    `rank_remote(model, variants, users, candidates, k) -> (Spark frame of (variant, user_id, item_id,
    rank), done)` ranks the variants elsewhere (recommend.engine=spark: `spark_variants`)."""
    ec, k = cfg.eval, cfg.eval.k
    cold = None
    if ec.protocol == "cold_items":
        train, test, cold = cold_item_split(interactions, ec.cold_item_share, ec.seed)
        if rescore is None:
            raise ValueError("eval.protocol=cold_items needs the classifier rescored without the cold items' labels")
        labels = None if catalogue.items is None else item_genres_pandas(catalogue.items, "full").rename(
            columns={"score": "probability"})  # the true labels, 1 per (item, genre)
        catalogue = replace(catalogue, item_genre_scores=rescore(cold))
    else:
        train, test = split(interactions, ec.protocol, ec.holdout_share, ec.seed)
    model = rec.fit(train, catalogue, genre_weights(train, catalogue, cfg.genres, run_date), cfg.recommend,
                    cfg.genres, cfg.clean.rating_max)
    held = test  # as split: A/B folds train on other users' held-out rows, repeats included
    test = new_items(test, train)  # a no-op for ML-100k, where each user rates an item once
    users = np.flatnonzero(pd.Index(model.user_ids).isin(test["user_id"].unique()))
    if item_genres is None and catalogue.item_genre_scores is not None:
        item_genres = catalogue.item_genre_scores.rename(columns={"probability": "score"})
    item_users = pd.DataFrame({"item_id": model.item_ids, "users": np.asarray(model.seen.sum(0)).ravel()})
    candidates = None if cold is None else np.flatnonzero(pd.Index(model.item_ids).isin(set(cold)))
    extra = dict(n_catalogue=model.n_items if cold is None else len(candidates), n_train_users=model.n_users)

    weights = cfg.recommend.weights.model_dump()
    variants = model_variants(weights, model.available)
    if cold is not None:  # the ablations are moot where cf and popularity are blind
        variants = {n: w for n, w in variants.items() if not n.startswith("blend-")}
    ranked, remote, remote_names, done = {}, None, set(), (lambda: None)
    if rank_remote is not None:  # recommend.engine=spark: the variants ranked on the executors
        remote, done = rank_remote(model, variants, users, candidates, k)
        remote_names = set(variants)
    else:
        ranked = {name: (model, top) for name, top in rec.recommend_many(
            model, variants, k, cfg.recommend.block_users, users=users, candidates=candidates).items()}
    s_truth = None  # the test split cached in Spark
    try:  # `done` removes what rank_remote left in the lake, whatever happens next
        if cold is not None:
            if model.available.get("genre") and labels is not None:
                s, has, _ = rec.item_genre_matrix(labels, model.item_ids, cfg.recommend.gamma, model.genres)
                truth = replace(model, item_genre=s, item_has_genre=has)
                ranked["genre-labels"] = (truth, rec.recommend(truth, {"genre": 1.0}, k, cfg.recommend.block_users,
                                                               users=users, candidates=candidates))
                variants["genre-labels"] = {"genre": 1.0}
            variants["random"] = {}
        # the learned second stage, trained on a split of `train` only; auto may drop it (decision recorded)
        reranked, decision = ({}, None) if cold is not None or cfg.rerank.enabled == "off" else rerank.evaluation(
            train, catalogue, cfg, run_date, rec.FIRST_STAGE, model, users)
        variants.update({name: dict(variants["blend"]) for name in reranked})  # what it re-orders: the blend's top M
        local = {}  # variant -> (user_id, item_id, rank) frame ranked here
        for name in variants:
            if name in remote_names:
                continue
            if name in reranked:
                local[name] = reranked[name]
            elif name == "random":
                local[name] = random_recs(model.user_ids[users], model.item_ids[candidates], k, ec.seed)
            else:
                m, top = ranked[name]
                local[name] = pd.DataFrame({"user_id": m.user_ids[top.users], "item_id": m.item_ids[top.items],
                                            "rank": top.rank})
        if spark is None:
            models = {name: ranking_metrics(test, local[name], k, item_genres=item_genres, item_users=item_users, **extra)
                      for name in variants}
        else:  # one variant's rows at a time: the driver's heap holds one copy, not every variant's (ML-25M)
            from pyspark.sql import functions as F

            to_spark = to_spark or (lambda frame, _name: spark.createDataFrame(frame))
            s_truth = to_spark(test[["user_id", "item_id"]], "truth").cache()
            s_users = to_spark(item_users, "item_users")
            s_genres = None if item_genres is None else to_spark(item_genres[["item_id", "genre", "score"]], "item_genres")
            models = {}
            for name in variants:
                recs = (remote.where(F.col("variant") == name).drop("variant") if name in remote_names
                        else to_spark(local[name], f"variant-{name}"))
                models[name] = spark_ranking_metrics(s_truth, recs, k, item_users=s_users, item_genres=s_genres, **extra)
    finally:
        done()
        if s_truth is not None:
            s_truth.unpersist()
    # models holds metric values only, so a reader can iterate them; each variant's blend weights sit apart
    payload = {"primary": "rerank" if "rerank" in reranked else "blend", "protocol": ec.protocol, "k": k,
               "variants": variants, "train_rows": int(len(train)), "test_rows": int(len(test)), "models": models}
    if decision is not None:
        payload["rerank_decision"] = decision
    if cold is not None:
        payload["cold_items"] = int(len(candidates))
    if cfg.ab.variants:  # each A/B variant on its own test users, with intervals (genre_lib/ab_eval.py)
        fit = lambda rows, rc: rec.fit(rows, catalogue, genre_weights(rows, catalogue, cfg.genres, run_date), rc,  # noqa: E731
                                       cfg.genres, cfg.clean.rating_max)
        payload["variants_ab"] = ab_eval.variants_ab(train, held, cfg, fit, model, cold)
    return payload


RANKED = "variant string, user_id string, item_id string, rank int"


def rank_variants(variants: dict, k: int, candidates, model, rc, _name, users: np.ndarray) -> pd.DataFrame:
    """One block of test users ranked under every variant (RANKED rows): what the executors run."""
    tops = rec.recommend_many(model, variants, k, rc.block_users, users=users, candidates=candidates)
    return pd.concat([pd.DataFrame({"variant": v, "user_id": model.user_ids[t.users], "item_id": model.item_ids[t.items],
                                    "rank": t.rank.astype("int32")}) for v, t in tops.items()], ignore_index=True)


def spark_variants(ctx) -> Callable:
    """evaluate's `rank_remote` for recommend.engine=spark: the refit model goes to the executors as
    the recommend stage's does (spark_rank.py), every variant's top k comes back as one frame,
    materialised once in the lake's scratch space and removed by `done`."""
    from functools import partial

    def rank_remote(model, variants, users, candidates, k):
        frame, drop_model = spark_rank.rank(ctx, [(None, model, ctx.cfg.recommend, users)],
                                            partial(rank_variants, variants, k, candidates), RANKED)
        scratch = Scratch(ctx)
        try:
            frame.write.parquet(scratch.uri("ranked"))
        finally:
            drop_model()
        return ctx.spark.read.parquet(scratch.uri("ranked")), scratch.remove

    return rank_remote


class Scratch:
    """evaluate's scratch space in the lake, `_artifacts/evaluate/ds=<D>/<uuid>/`, removed by `remove`.
    `frame` hands a pandas frame to Spark as a parquet file there: createDataFrame would keep every row
    in the driver's JVM heap (at ML-25M shape the test split and a variant's rows ran 2 GB out)."""

    def __init__(self, ctx):
        self.lake, self.spark = ctx.lake, ctx.spark
        self.parts = ("_artifacts", "evaluate", f"ds={ctx.ds}", uuid.uuid4().hex)

    def uri(self, name: str) -> str:
        return self.lake.uri(*self.parts, name)

    def frame(self, frame: pd.DataFrame, name: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = self.lake.path(*self.parts, name)
        self.lake.fs.create_dir(folder, recursive=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), f"{folder}/part-00000.parquet",
                       filesystem=self.lake.fs)
        return self.spark.read.parquet(self.uri(name))

    def remove(self) -> None:
        from pyarrow import fs

        if self.lake.fs.get_file_info(self.lake.path(*self.parts)).type != fs.FileType.NotFound:
            self.lake.fs.delete_dir(self.lake.path(*self.parts))


def genre_weights(train: pd.DataFrame, catalogue: Catalogue, gc, run_date: Optional[dt.date]) -> Optional[pd.DataFrame]:
    """user_genre_weights of a training split, by the rule the genres stage publishes with."""
    if catalogue.items is None or train.empty:
        return None
    if run_date is None:
        run_date = pd.to_datetime(train["ts"], utc=True).max().date() if "ts" in train else dt.date.today()
    memberships = item_genres_pandas(catalogue.items, gc.multi_genre)
    return user_genre_weights_pandas(train, memberships, gc, run_date)


def random_recs(user_ids: np.ndarray, item_ids: np.ndarray, k: int, seed: int) -> pd.DataFrame:
    """A seeded uniform draw of k candidates per user: the floor every model must clear."""
    rng = np.random.default_rng(seed)
    k = min(k, len(item_ids))
    picks = np.stack([rng.choice(len(item_ids), k, replace=False) for _ in user_ids]) if len(user_ids) else np.zeros((0, k), int)
    return pd.DataFrame({"user_id": np.repeat(user_ids, k), "item_id": item_ids[picks.ravel()],
                         "rank": np.tile(np.arange(1, k + 1), len(user_ids))})


def markdown_report(payload: dict) -> str:
    k = payload["k"]
    cols = [f"{m}@{k}" for m in METRICS]
    lines = [f"# Evaluation ({payload['protocol']}, k={k}, primary: {payload['primary']})", "",
             f"train rows {payload['train_rows']}, test rows {payload['test_rows']}", "",
             "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in payload["models"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in cols) + " |")
    return "\n".join(lines) + "\n" + ab_eval.markdown(payload.get("variants_ab"), k)


def log_to_mlflow(payload: dict) -> dict:
    """Metrics per model (`<model>.<metric>`), a bar chart per metric, the report and the payload."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    k = payload["k"]
    flat = {}
    for name, m in payload["models"].items():
        for key, v in m.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                flat[f"{name}.{key}".replace("@", "_at_")] = float(v)
    flat.update(ab_eval.mlflow_metrics(payload.get("variants_ab")))  # ab.<variant>.*, ab.diff.*
    mlflow.log_metrics(flat)
    names = list(payload["models"])
    for metric in METRICS:
        key = f"{metric}@{k}"
        vals = [payload["models"][n].get(key, np.nan) for n in names]
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(names) + 2), 3))
        ax.bar(names, vals, color=["C1" if n == payload["primary"] else "C0" for n in names])
        ax.set_title(key)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        fig.tight_layout()
        mlflow.log_figure(fig, f"charts/{metric}_at_{k}.png")
        plt.close(fig)
    mlflow.log_text(markdown_report(payload), "report.md")
    mlflow.log_dict(payload, "metrics.json")
    log_report(payload)  # report.html; metric keys the same every night
    p = payload["models"][payload["primary"]]
    return {f"primary_{key}".replace("@", "_at_"): v for key, v in p.items() if isinstance(v, (int, float))}


def rescore_hiding_labels(ctx, hidden: set) -> pd.DataFrame:
    """item_genre_scores from a classifier trained as the night's train stage does, but with the
    `hidden` items' genre labels removed: their scores are the model's predictions."""
    from genre_lib.classifier import predict_proba
    from genre_lib.genre_data import score_items
    from genre_lib.training import night_data, run_experiment

    data, _ = night_data(ctx, frozenset(hidden))
    result = run_experiment(data, ctx.cfg.classifier)
    return score_items(data, predict_proba(result.model, result.inputs))


def run(ctx) -> dict:
    history = read_history_pandas(ctx.lake, ctx.ds, ctx.cfg.genres.lookback_days)
    if ctx.cfg.eval.protocol == "stratified":
        history = source_for(ctx.cfg).source_order(history)  # a published split's row order
    catalogue = Catalogue.from_lake(ctx.lake, ctx.ds)
    genres_ds = ctx.lake.latest("item_genres", ctx.ds)
    item_genres = ctx.lake.read_pandas("item_genres", genres_ds) if genres_ds else None
    rescore = (lambda cold: rescore_hiding_labels(ctx, set(cold))) if ctx.cfg.eval.protocol == "cold_items" else None
    remote = spark_variants(ctx) if ctx.cfg.recommend.engine == "spark" else None
    scratch = Scratch(ctx)
    try:
        payload = evaluate(history, catalogue, ctx.cfg, item_genres=item_genres, spark=ctx.spark,
                           run_date=ctx.run_date, rescore=rescore, rank_remote=remote, to_spark=scratch.frame)
    finally:
        scratch.remove()
    ctx.lake.write_json("evaluation", ctx.ds, "metrics.json", payload, ctx.manifest())
    return log_to_mlflow(payload)
