"""Offline evaluation: ranking metrics (numpy reference and Spark), and the model comparison run.

Definitions follow Microsoft Recommenders' python_evaluation, so numbers compare with its tables:
binary relevance; only users present in both truth and predictions count (n);
  precision@k = sum_u hits_u / (k n)           recall@k = mean_u hits_u / |T_u|
  ndcg@k      = mean_u DCG_u / IDCG_u, DCG = sum over hits of 1/ln(1 + rank),
                IDCG = sum_{r <= min(|T_u|, k)} 1/ln(1 + r)
  map@k       = mean_u (sum over hits of (hits so far)/rank) / |T_u|      (Recommenders' `map`)
  hit_rate@k  = share of users with at least one hit
Beyond accuracy, over every user's top k:
  coverage@k  = distinct recommended items / catalogue size
  diversity@k = mean_u mean over pairs of 1 - cos(genre vectors)  (via |sum a|^2 identity, no pair join)
  novelty@k   = mean over recommended items of -log2 p(i), p(i) = training users of i / training users
"""
from __future__ import annotations

import json
import math
from typing import Optional

import numpy as np
import pandas as pd

METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "coverage", "diversity", "novelty")


def _genre_unit_vectors(item_genres: pd.DataFrame) -> pd.DataFrame:
    """(item_id, genre, a) with each item's genre vector scaled to unit length."""
    g = item_genres[["item_id", "genre", "score"]].copy()
    g = g[g["score"] > 0]
    norm = np.sqrt((g["score"] ** 2).groupby(g["item_id"]).transform("sum"))
    g["a"] = g["score"] / norm
    return g[["item_id", "genre", "a"]]


def ranking_metrics(truth: pd.DataFrame, recs: pd.DataFrame, k: int, *, n_catalogue: Optional[int] = None,
                    item_genres: Optional[pd.DataFrame] = None,
                    item_users: Optional[pd.DataFrame] = None, n_train_users: Optional[int] = None) -> dict:
    """Numpy/pandas reference. truth: (user_id, item_id); recs: (user_id, item_id, rank 1..);
    item_genres: (item_id, genre, score); item_users: (item_id, users) counts in training."""
    recs = recs[recs["rank"] <= k][["user_id", "item_id", "rank"]]
    truth = truth[["user_id", "item_id"]].drop_duplicates()
    actual = truth.groupby("user_id").size().rename("actual")
    users = actual.index.intersection(pd.Index(recs["user_id"].unique()))
    n = len(users)
    out = {}
    if n:
        hits = recs.merge(truth, on=["user_id", "item_id"]).sort_values(["user_id", "rank"])
        hits = hits[hits["user_id"].isin(users)]
        hits["gain"] = 1.0 / np.log1p(hits["rank"].to_numpy(float))
        hits["prec"] = (hits.groupby("user_id").cumcount() + 1) / hits["rank"]
        per = hits.groupby("user_id").agg(hit=("rank", "size"), dcg=("gain", "sum"), ap=("prec", "sum"))
        per = per.reindex(users, fill_value=0.0).join(actual)
        ideal = np.cumsum(1.0 / np.log1p(np.arange(1, k + 1)))
        idcg = ideal[np.minimum(per["actual"].to_numpy(), k) - 1]
        out.update({
            f"ndcg@{k}": float((per["dcg"] / idcg).sum() / n),
            f"precision@{k}": float(per["hit"].sum() / (k * n)),
            f"recall@{k}": float((per["hit"] / per["actual"]).sum() / n),
            f"map@{k}": float((per["ap"] / per["actual"]).sum() / n),
            f"hit_rate@{k}": float((per["hit"] > 0).sum() / n),
        })
    else:
        out.update({f"{m}@{k}": 0.0 for m in ("ndcg", "precision", "recall", "map", "hit_rate")})
    out["users"] = n
    if n_catalogue:
        out[f"coverage@{k}"] = float(recs["item_id"].nunique() / n_catalogue)
    if item_genres is not None:
        a = _genre_unit_vectors(item_genres)
        per_item_sq = a.assign(sq=a["a"] ** 2).groupby("item_id")["sq"].sum()
        s = recs.merge(a, on="item_id").groupby(["user_id", "genre"])["a"].sum()
        sum_sq = (s ** 2).groupby("user_id").sum()
        lst = recs.groupby("user_id").agg(m=("item_id", "size"))
        lst["self"] = recs.assign(sq=recs["item_id"].map(per_item_sq).fillna(0.0)).groupby("user_id")["sq"].sum()
        lst["sum_sq"] = sum_sq.reindex(lst.index).fillna(0.0)
        lst = lst[lst["m"] > 1]
        pairs = lst["m"] * (lst["m"] - 1) / 2
        out[f"diversity@{k}"] = float((1 - (lst["sum_sq"] - lst["self"]) / 2 / pairs).mean()) if len(lst) else 0.0
    if item_users is not None and n_train_users:
        cnt = recs["item_id"].map(item_users.set_index("item_id")["users"]).fillna(0.0).clip(lower=1.0)
        out[f"novelty@{k}"] = float((-np.log2(cnt / n_train_users)).mean()) if len(recs) else 0.0
    return out


def spark_ranking_metrics(truth, recs, k: int, *, n_catalogue: Optional[int] = None, item_genres=None,
                          item_users=None, n_train_users: Optional[int] = None) -> dict:
    """The same metrics over Spark DataFrames (same column names as the reference)."""
    from pyspark.sql import Window, functions as F

    recs = recs.where(F.col("rank") <= k).select("user_id", "item_id", "rank").cache()
    truth = truth.select("user_id", "item_id").distinct()
    actual = truth.groupBy("user_id").agg(F.count("*").alias("actual"))
    common = actual.join(recs.select("user_id").distinct(), "user_id")
    w = Window.partitionBy("user_id").orderBy("rank")
    hits = (recs.join(truth, ["user_id", "item_id"])
            .withColumn("prec", F.row_number().over(w) / F.col("rank"))
            .groupBy("user_id").agg(F.count("*").alias("hit"), F.sum(1.0 / F.log1p("rank")).alias("dcg"),
                                    F.sum("prec").alias("ap")))
    per = (common.join(hits, "user_id", "left").fillna(0.0, ["hit", "dcg", "ap"])
           .withColumn("idcg", F.expr(f"aggregate(sequence(1, least(actual, {k})), 0D, (acc, r) -> acc + 1D / ln(1D + r))")))
    row = per.agg(F.count("*").alias("n"), F.sum("hit").alias("hit"), F.sum(F.col("dcg") / F.col("idcg")).alias("ndcg"),
                  F.sum(F.col("hit") / F.col("actual")).alias("recall"), F.sum(F.col("ap") / F.col("actual")).alias("map"),
                  F.sum((F.col("hit") > 0).cast("double")).alias("hr")).first()
    n = row["n"]
    out = {}
    if n:
        out.update({f"ndcg@{k}": row["ndcg"] / n, f"precision@{k}": row["hit"] / (k * n),
                    f"recall@{k}": row["recall"] / n, f"map@{k}": row["map"] / n, f"hit_rate@{k}": row["hr"] / n})
    else:
        out.update({f"{m}@{k}": 0.0 for m in ("ndcg", "precision", "recall", "map", "hit_rate")})
    out["users"] = n
    if n_catalogue:
        out[f"coverage@{k}"] = recs.select("item_id").distinct().count() / n_catalogue
    if item_genres is not None:
        g = item_genres.where(F.col("score") > 0)
        g = g.withColumn("a", F.col("score") / F.sqrt(F.sum(F.col("score") ** 2).over(Window.partitionBy("item_id"))))
        sq = g.groupBy("item_id").agg(F.sum(F.col("a") ** 2).alias("sq"))
        s = (recs.join(g, "item_id").groupBy("user_id", "genre").agg(F.sum("a").alias("s"))
             .groupBy("user_id").agg(F.sum(F.col("s") ** 2).alias("sum_sq")))
        lst = (recs.join(sq, "item_id", "left").groupBy("user_id")
               .agg(F.count("*").alias("m"), F.sum(F.coalesce("sq", F.lit(0.0))).alias("self"))
               .join(s, "user_id", "left").fillna(0.0, ["sum_sq"]).where(F.col("m") > 1))
        div = lst.agg(F.avg(1 - (F.col("sum_sq") - F.col("self")) / 2 / (F.col("m") * (F.col("m") - 1) / 2))).first()[0]
        out[f"diversity@{k}"] = float(div) if div is not None else 0.0
    if item_users is not None and n_train_users:
        nov = (recs.join(item_users, "item_id", "left")
               .agg(F.avg(-F.log2(F.greatest(F.coalesce("users", F.lit(0.0)), F.lit(1.0)) / n_train_users))).first()[0])
        out[f"novelty@{k}"] = float(nov) if nov is not None else 0.0
    recs.unpersist()
    return {key: float(v) if key != "users" else int(v) for key, v in out.items()}


# --------------------------------------------------------------------------------------------
# the comparison run: blend, each scorer alone, blend without each, popularity
# --------------------------------------------------------------------------------------------
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


def evaluate(interactions: pd.DataFrame, catalogue, cfg, *, item_genres: Optional[pd.DataFrame] = None,
             spark=None) -> dict:
    """Split by cfg.eval.protocol, fit every scorer on the training split only, rank every variant
    for the test users with training items removed, score with the Spark metrics when `spark` is
    given (else the numpy reference). Returns the metrics.json payload."""
    from genre_lib import recommend as rec
    from genre_lib.splits import split

    ec, k = cfg.eval, cfg.eval.k
    train, test = split(interactions, ec.protocol, ec.holdout_share, ec.seed)
    model = rec.fit(train, catalogue, cfg)
    test = test.assign(user_id=test["user_id"].astype(str), item_id=test["item_id"].astype(str))
    # Recommendations never repeat a training item, so a held-out repeat of one can't be relevant:
    # truth is the user's new items (a no-op for ML-100k, where each user rates an item once).
    seen = train[["user_id", "item_id"]].astype(str).drop_duplicates()
    test = test.merge(seen, on=["user_id", "item_id"], how="left", indicator=True)
    test = test[test["_merge"] == "left_only"].drop(columns="_merge")
    users = np.flatnonzero(pd.Index(model.user_ids).isin(test["user_id"].unique()))
    if item_genres is None and catalogue.item_genre_scores is not None:
        item_genres = catalogue.item_genre_scores.rename(columns={"probability": "score"})
    item_users = pd.DataFrame({"item_id": model.item_ids, "users": np.asarray(model.seen.sum(0)).ravel()})
    extra = dict(n_catalogue=model.n_items, n_train_users=model.n_users)

    weights = cfg.recommend.weights.model_dump()
    models, variants = {}, model_variants(weights, model.available)
    for name, w in variants.items():
        top = rec.recommend(model, w, k, cfg.recommend.block_users, users=users)
        recs = pd.DataFrame({"user_id": model.user_ids[top.users], "item_id": model.item_ids[top.items], "rank": top.rank})
        if spark is not None:
            to = lambda df: spark.createDataFrame(df)  # noqa: E731
            m = spark_ranking_metrics(to(test[["user_id", "item_id"]]), to(recs), k,
                                      item_genres=None if item_genres is None else to(item_genres[["item_id", "genre", "score"]]),
                                      item_users=to(item_users), **extra)
        else:
            m = ranking_metrics(test, recs, k, item_genres=item_genres, item_users=item_users, **extra)
        models[name] = m
    # models holds metric values only, so a reader can iterate them; each variant's blend weights sit apart
    return {"primary": "blend", "protocol": ec.protocol, "k": k, "variants": variants,
            "train_rows": int(len(train)), "test_rows": int(len(test)), "models": models}


def markdown_report(payload: dict) -> str:
    k = payload["k"]
    cols = [f"{m}@{k}" for m in METRICS]
    lines = [f"# Evaluation ({payload['protocol']}, k={k}, primary: {payload['primary']})", "",
             f"train rows {payload['train_rows']}, test rows {payload['test_rows']}", "",
             "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in payload["models"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


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
    p = payload["models"][payload["primary"]]
    return {f"primary_{key}".replace("@", "_at_"): v for key, v in p.items() if isinstance(v, (int, float))}


def to_json(payload: dict) -> str:
    return json.dumps(payload, indent=1, sort_keys=True, default=str)
