"""Ranking metrics, a numpy reference and a Spark twin that give the same numbers.

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


def per_user_metrics(truth: pd.DataFrame, recs: pd.DataFrame, k: int) -> pd.DataFrame:
    """The accuracy metrics of each user present in both truth and recs (index user_id; columns
    ndcg@k, precision@k, recall@k, map@k, hit_rate@k): `ranking_metrics` reports their means, and
    A/B intervals (genre_lib/evaluation/ab_eval.py) resample them."""
    recs = recs[recs["rank"] <= k][["user_id", "item_id", "rank"]]
    truth = truth[["user_id", "item_id"]].drop_duplicates()
    actual = truth.groupby("user_id").size().rename("actual")
    users = actual.index.intersection(pd.Index(recs["user_id"].unique()))
    hits = recs.merge(truth, on=["user_id", "item_id"]).sort_values(["user_id", "rank"])
    hits = hits[hits["user_id"].isin(users)]
    hits["gain"] = 1.0 / np.log1p(hits["rank"].to_numpy(float))
    hits["prec"] = (hits.groupby("user_id").cumcount() + 1) / hits["rank"]
    per = hits.groupby("user_id").agg(hit=("rank", "size"), dcg=("gain", "sum"), ap=("prec", "sum"))
    per = per.reindex(users, fill_value=0.0).join(actual)
    ideal = np.cumsum(1.0 / np.log1p(np.arange(1, k + 1)))
    idcg = ideal[np.minimum(per["actual"].to_numpy(), k) - 1] if len(per) else np.zeros(0)
    return pd.DataFrame({f"ndcg@{k}": per["dcg"] / idcg, f"precision@{k}": per["hit"] / k,
                         f"recall@{k}": per["hit"] / per["actual"], f"map@{k}": per["ap"] / per["actual"],
                         f"hit_rate@{k}": (per["hit"] > 0).astype(float)}, index=users).astype(float)


def ranking_metrics(truth: pd.DataFrame, recs: pd.DataFrame, k: int, *, n_catalogue: Optional[int] = None,
                    item_genres: Optional[pd.DataFrame] = None,
                    item_users: Optional[pd.DataFrame] = None, n_train_users: Optional[int] = None) -> dict:
    """Numpy/pandas reference. truth: (user_id, item_id); recs: (user_id, item_id, rank 1..);
    item_genres: (item_id, genre, score); item_users: (item_id, users) counts in training."""
    recs = recs[recs["rank"] <= k][["user_id", "item_id", "rank"]]
    per = per_user_metrics(truth, recs, k)
    n = len(per)
    out = {m: float(per[m].mean()) if n else 0.0 for m in per.columns}
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
    """The same metrics over Spark DataFrames (same column names as the reference). Every sum of
    doubles is taken in decimal (`exact_sum`): a double sum adds Spark's partial sums in the order its
    tasks finish, so the same night would not give the same last digits twice; a decimal sum is exact."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def exact_sum(col, window=None):
        total = F.sum((F.col(col) if isinstance(col, str) else col).cast("decimal(38,18)"))
        return (total if window is None else total.over(window)).cast("double")

    def exact_avg(col):
        return exact_sum(col) / F.count(F.lit(1))

    recs = recs.where(F.col("rank") <= k).select("user_id", "item_id", "rank").cache()
    truth = truth.select("user_id", "item_id").distinct()
    actual = truth.groupBy("user_id").agg(F.count("*").alias("actual"))
    common = actual.join(recs.select("user_id").distinct(), "user_id")
    w = Window.partitionBy("user_id").orderBy("rank")
    hits = (recs.join(truth, ["user_id", "item_id"])
            .withColumn("prec", F.row_number().over(w) / F.col("rank"))
            .groupBy("user_id").agg(F.count("*").alias("hit"), exact_sum(1.0 / F.log1p("rank")).alias("dcg"),
                                    exact_sum("prec").alias("ap")))
    per = (common.join(hits, "user_id", "left").fillna(0.0, ["hit", "dcg", "ap"])
           .withColumn("idcg", F.expr(f"aggregate(sequence(1, least(actual, {k})), 0D, (acc, r) -> acc + 1D / ln(1D + r))")))
    row = per.agg(F.count("*").alias("n"), F.sum("hit").alias("hit"), exact_sum(F.col("dcg") / F.col("idcg")).alias("ndcg"),
                  exact_sum(F.col("hit") / F.col("actual")).alias("recall"), exact_sum(F.col("ap") / F.col("actual")).alias("map"),
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
        g = g.withColumn("a", F.col("score") / F.sqrt(exact_sum(F.col("score") ** 2, Window.partitionBy("item_id"))))
        sq = g.groupBy("item_id").agg(exact_sum(F.col("a") ** 2).alias("sq"))
        s = (recs.join(g, "item_id").groupBy("user_id", "genre").agg(exact_sum("a").alias("s"))
             .groupBy("user_id").agg(exact_sum(F.col("s") ** 2).alias("sum_sq")))
        lst = (recs.join(sq, "item_id", "left").groupBy("user_id")
               .agg(F.count("*").alias("m"), exact_sum(F.coalesce("sq", F.lit(0.0))).alias("self"))
               .join(s, "user_id", "left").fillna(0.0, ["sum_sq"]).where(F.col("m") > 1))
        div = lst.agg(exact_avg(1 - (F.col("sum_sq") - F.col("self")) / 2 / (F.col("m") * (F.col("m") - 1) / 2))).first()[0]
        out[f"diversity@{k}"] = float(div) if div is not None else 0.0
    if item_users is not None and n_train_users:
        nov = (recs.join(item_users, "item_id", "left")
               .agg(exact_avg(-F.log2(F.greatest(F.coalesce("users", F.lit(0.0)), F.lit(1.0)) / n_train_users))).first()[0])
        out[f"novelty@{k}"] = float(nov) if nov is not None else 0.0
    recs.unpersist()
    return {key: float(v) if key != "users" else int(v) for key, v in out.items()}
