"""Per-user genre interest weights (the GENRE method) and item -> genre memberships, in Spark.

f(u,c) = sum over the user's interactions i of value(i) * s(i,c), where s(i,c) is 1/num_genres
(`split`) or 1 (`full`) and value is 1, or the rating / event weight (`rating_weighted`), times an
exponential decay by age (`half_life_days`). w_uc = f(u,c) / sum_k f(u,c_k); with `shrinkage` m the
weights are smoothed towards the global genre distribution p_c: (f(u,c) + m p_c) / (sum_k f + m).
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genre_lib.config.settings import GenresConfig
from genre_lib.lake.storage import Lake, to_contract
from genre_lib.lake.history import history_dates


def genre_vocab(items: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """Keep last night's index order; new genres are appended in sorted order."""
    known = list(previous.sort_values("genre_index")["genre"]) if previous is not None else []
    seen = sorted({g for gs in items["genres"] for g in gs} - set(known))
    vocab = known + seen
    return pd.DataFrame({"genre": vocab, "genre_index": range(len(vocab))})


def item_genres(spark, items_sdf, multi_genre: str):
    from pyspark.sql import functions as F

    n = F.size("genres")
    score = F.lit(1.0) / n if multi_genre == "split" else F.lit(1.0)
    return items_sdf.where(n > 0).select("item_id", F.explode("genres").alias("genre"), score.alias("score"))


def user_genre_weights(history, item_genres_sdf, cfg: GenresConfig, run_date: dt.date):
    """history: interactions (user_id, item_id, event, rating, ts); returns the weights frame."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    value = F.lit(1.0)
    if cfg.rating_weighted:
        ev = F.create_map(*[x for k, w in cfg.event_weights.items() for x in (F.lit(k), F.lit(float(w)))])
        value = F.coalesce(F.col("rating"), ev[F.col("event")], F.lit(1.0))
    if cfg.half_life_days:
        day_end = F.to_timestamp(F.lit((run_date + dt.timedelta(days=1)).isoformat()))
        age_days = (day_end.cast("double") - F.col("ts").cast("double")) / 86400.0
        value = value * F.pow(F.lit(0.5), age_days / F.lit(cfg.half_life_days))

    # a per-user window, not a groupBy joined back: no second pass over history, and no shuffle when
    # history is already partitioned by user (read_history does that); skipped when it keeps everyone
    history = history.where(F.col("user_id").isNotNull())
    if cfg.min_interactions > 1:
        n = F.count(F.lit(1)).over(Window.partitionBy("user_id"))
        history = history.withColumn("_n", n).where(F.col("_n") >= cfg.min_interactions).drop("_n")
    f = (history.withColumn("_v", value)
         .join(item_genres_sdf, "item_id")
         .groupBy("user_id", "genre").agg(F.sum(F.col("_v") * F.col("score")).alias("count")))
    total = Window.partitionBy("user_id")
    # A zero event weight, a zero rating or decay underflow can leave a sum of 0 (ANSI division by
    # zero). Without shrinkage w_uc is then undefined: the user is dropped, as recommend.py's zero
    # rows are. With shrinkage the user falls back to the global mix p_c (the Bayesian prior), whose
    # own total must be positive; no prior, no rows.
    if cfg.shrinkage > 0:
        prior = f.groupBy("genre").agg(F.sum("count").alias("_g"))
        all_ = F.sum("_g").over(Window.partitionBy())
        prior = prior.withColumn("_p", F.when(all_ > 0, F.col("_g") / all_)).where(F.col("_p").isNotNull())
        users = f.select("user_id").distinct()
        f = (users.crossJoin(F.broadcast(prior.select("genre", "_p")))  # users x genres, not users x items
             .join(f, ["user_id", "genre"], "left").fillna(0.0, ["count"]))
        den = F.sum("count").over(total) + cfg.shrinkage
        num = F.col("count") + cfg.shrinkage * F.col("_p")
    else:
        den, num = F.sum("count").over(total), F.col("count")
    # a guard inside the expression, not a filter before it: the optimiser may reorder filters
    out = (f.withColumn("_den", den).withColumn("weight", F.when(F.col("_den") > 0, num / F.col("_den")))
           .where(F.col("weight") > 0).drop("_den"))
    rank = F.row_number().over(Window.partitionBy("user_id").orderBy(F.desc("weight"), "genre"))
    return out.withColumn("rank", rank).select("user_id", "genre", "count", "weight", "rank")


# --- the numpy twin: the same rule on pandas frames, for stages that refit on a split ---------------
def genre_weights(train: pd.DataFrame, catalogue, gc: GenresConfig, run_date: Optional[dt.date],
                  totals: Optional[pd.Series] = None) -> Optional[pd.DataFrame]:
    """user_genre_weights of a training split, by the rule the genres stage publishes with (`totals`:
    the shrinkage prior's genre sums over every block of the split, user_genre_weights_pandas)."""
    if catalogue.items is None or train.empty:
        return None
    if run_date is None:
        run_date = pd.to_datetime(train["ts"], utc=True).max().date() if "ts" in train else dt.date.today()
    memberships = item_genres_pandas(catalogue.items, gc.multi_genre)
    return user_genre_weights_pandas(train, memberships, gc, run_date, totals)


def item_genres_pandas(items: pd.DataFrame, multi_genre: str) -> pd.DataFrame:
    """`item_genres` of items_clean rows (item_id, genres), as `item_genres` computes it in Spark."""
    rows = items[["item_id", "genres"]].explode("genres").dropna(subset=["genres"])
    n = rows.groupby("item_id")["genres"].transform("size").to_numpy(float)
    score = 1.0 / n if multi_genre == "split" else np.ones(len(rows))
    return pd.DataFrame({"item_id": rows["item_id"].astype(str).to_numpy(), "genre": rows["genres"].astype(str).to_numpy(),
                         "score": score})


def user_genre_weights_pandas(history: pd.DataFrame, item_genres_df: pd.DataFrame, cfg: GenresConfig,
                              run_date: dt.date, totals: pd.Series | None = None) -> pd.DataFrame:
    """`user_genre_weights` rows, equal to the Spark result on the same input (tests/test_genres.py).
    The join and the sum are one sparse product, users x items times items x genres, so memory grows
    with the interactions' codes and users x genres, not with interactions x genres as a merge would.
    `totals`: sum_u f(u,c) per genre over a larger history that this one's users are a block of (the
    shrinkage prior is that history's mix: genre_totals summed over the blocks); default this one's."""
    f = _genre_counts(history, item_genres_df, cfg, run_date)
    if cfg.shrinkage > 0:
        g = f.groupby("genre")["count"].sum() if totals is None else totals
        prior = (g / g.sum()) if g.sum() > 0 else g.iloc[:0]
        grid = pd.MultiIndex.from_product([f["user_id"].unique(), prior.index], names=["user_id", "genre"])
        f = f.set_index(["user_id", "genre"]).reindex(grid, fill_value=0.0).reset_index()
        den = f.groupby("user_id")["count"].transform("sum") + cfg.shrinkage
        num = f["count"] + cfg.shrinkage * f["genre"].map(prior)
    else:
        den, num = f.groupby("user_id")["count"].transform("sum"), f["count"]
    f["weight"] = np.where(den > 0, num / den.where(den > 0, 1.0), np.nan)
    out = f[f["weight"] > 0].sort_values(["user_id", "weight", "genre"], ascending=[True, False, True])
    out = out.assign(rank=out.groupby("user_id").cumcount().astype("int32") + 1)
    return out[["user_id", "genre", "count", "weight", "rank"]].reset_index(drop=True)


def genre_totals(history: pd.DataFrame, item_genres_df: pd.DataFrame, cfg: GenresConfig, run_date: dt.date) -> pd.Series:
    """sum_u f(u,c) per genre of `history`: what user_genre_weights_pandas's `totals` sums over blocks."""
    return _genre_counts(history, item_genres_df, cfg, run_date).groupby("genre")["count"].sum()


def _genre_counts(history: pd.DataFrame, item_genres_df: pd.DataFrame, cfg: GenresConfig,
                  run_date: dt.date) -> pd.DataFrame:
    """f(u,c) as (user_id, genre, count) rows: one per pair the join yields, a zero sum included."""
    h = history[history["user_id"].notna()]
    u, users = pd.factorize(h["user_id"].astype(str))
    if cfg.min_interactions > 1:
        keep = np.bincount(u, minlength=len(users))[u] >= cfg.min_interactions
        h = h[keep]
        u, users = pd.factorize(h["user_id"].astype(str))
    v = np.ones(len(h))
    if cfg.rating_weighted:
        ev = h["event"].map({k: float(w) for k, w in cfg.event_weights.items()})
        v = h["rating"].astype(float).where(h["rating"].notna(), ev).fillna(1.0).to_numpy(float)
    if cfg.half_life_days:
        day_end = pd.Timestamp(run_date + dt.timedelta(days=1), tz="UTC")
        age_days = (day_end - pd.to_datetime(h["ts"], utc=True)).dt.total_seconds().to_numpy() / 86400.0
        v = v * np.power(0.5, age_days / cfg.half_life_days)
    i, items = pd.factorize(h["item_id"].astype(str))
    c, genre_names = pd.factorize(item_genres_df["genre"].astype(str))
    gi = pd.Index(items).get_indexer(item_genres_df["item_id"].astype(str))
    on = gi >= 0
    vals = sp.csr_matrix((v, (u, i)), shape=(len(users), len(items)))  # duplicates summed, zeros kept
    scores = sp.csr_matrix((item_genres_df["score"].to_numpy(float)[on], (gi[on], c[on])),
                           shape=(len(items), len(genre_names)))
    counts = (vals @ scores).toarray()
    ones = lambda m: sp.csr_matrix((np.ones(m.nnz), m.indices, m.indptr), shape=m.shape)  # noqa: E731
    uu, gg = np.nonzero((ones(vals) @ ones(scores)).toarray())  # the pairs the join yields, a 0 sum included
    return pd.DataFrame({"user_id": np.asarray(users, dtype=object)[uu], "genre": np.asarray(genre_names, dtype=object)[gg],
                         "count": counts[uu, gg]})


def read_history(spark, lake: Lake, run_date: dt.date, lookback_days: int | None):
    """Every committed clean interaction on or before the run date, each event once."""
    dates = history_dates(lake, "interactions_clean", run_date, lookback_days)
    if not dates:
        raise FileNotFoundError(f"no committed interactions_clean partitions up to {run_date} in {lake.root}")
    df = spark.read.parquet(*lake.spark_paths("interactions_clean", dates))
    # one shuffle, by user: the dedupe, the per-user sums and the rank windows downstream all reuse it
    return (to_contract(df, "interactions_clean").repartition("user_id")
            .dropDuplicates(["user_id", "item_id", "event", "ts"]))


def run(ctx) -> dict:
    """genre_vocab, item_genres and user_genre_weights for the night, from items_clean and the
    interactions_clean history up to it."""
    spark, cfg, lake, run_date, manifest = ctx.spark, ctx.cfg, ctx.lake, ctx.run_date, ctx.manifest()
    ds = run_date.isoformat()
    items = lake.read_pandas("items_clean", ds)
    prev = lake.latest("genre_vocab", run_date - dt.timedelta(days=1))
    vocab = genre_vocab(items, lake.read_pandas("genre_vocab", prev) if prev else None)
    lake.write_pandas("genre_vocab", ds, vocab, {**manifest, "previous": prev})

    items_sdf = spark.read.parquet(lake.uri("items_clean", f"ds={ds}"))
    ig = item_genres(spark, items_sdf, cfg.genres.multi_genre).cache()
    m_items = lake.write_spark("item_genres", ds, ig, manifest)
    history = read_history(spark, lake, run_date, cfg.genres.lookback_days)
    weights = user_genre_weights(history, ig, cfg.genres, run_date)
    m_weights = lake.write_spark("user_genre_weights", ds, weights, manifest)
    return {"item_genre_rows": m_items["row_count"], "user_genre_weight_rows": m_weights["row_count"],
            "genres": len(vocab)}
