"""Per-user genre interest weights (the GENRE method) on pandas frames: the numpy twin of the
genre_weights stage's Spark rule (genre_lib/stages/genre_weights.py; tests/test_genres.py holds them
equal), for whatever refits on a split (evaluation, the re-ranker, tuning).

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

from genre_lib.config.data import GenresConfig


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
