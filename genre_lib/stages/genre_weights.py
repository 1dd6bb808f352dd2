"""Stage genre_weights: per-user genre interest weights (the GENRE method) and item -> genre
memberships, in Spark (its numpy twin, for refits on a split: genre_lib/ranking/interest.py).

f(u,c) = sum over the user's interactions i of value(i) * s(i,c), where s(i,c) is 1/num_genres
(`split`) or 1 (`full`) and value is 1, or the rating / event weight (`rating_weighted`), times an
exponential decay by age (`half_life_days`). w_uc = f(u,c) / sum_k f(u,c_k); with `shrinkage` m the
weights are smoothed towards the global genre distribution p_c: (f(u,c) + m p_c) / (sum_k f + m).
"""
from __future__ import annotations

import datetime as dt

import pandas as pd

from genre_lib.config.data import GenresConfig
from genre_lib.lake.history import history_dates
from genre_lib.lake.spark import to_contract
from genre_lib.lake.storage import Lake


def genre_vocab(items: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """Keep last night's index order; new genres are appended in sorted order."""
    known = list(previous.sort_values("genre_index")["genre"]) if previous is not None else []
    seen = sorted({g for gs in items["genres"] for g in gs} - set(known))
    vocab = known + seen
    return pd.DataFrame({"genre": vocab, "genre_index": range(len(vocab))})


def item_genres(items_sdf, multi_genre: str):
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

    items_sdf = spark.read.parquet(*lake.spark_paths("items_clean", [ds]))
    ig = item_genres(items_sdf, cfg.genres.multi_genre).cache()
    m_items = lake.write_spark("item_genres", ds, ig, manifest)
    history = read_history(spark, lake, run_date, cfg.genres.lookback_days)
    weights = user_genre_weights(history, ig, cfg.genres, run_date)
    m_weights = lake.write_spark("user_genre_weights", ds, weights, manifest)
    return {"item_genre_rows": m_items["row_count"], "user_genre_weight_rows": m_weights["row_count"],
            "genres": len(vocab)}
