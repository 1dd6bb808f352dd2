"""The learned second stage's features: one row per (user, candidate) of the blend's top M.

    side_data(model, interactions, last_items) -> Side   per-user and per-item facts of the fit data
    features(model, side, top) -> DataFrame       FEATURES columns, float32, finite

Feature groups (evaluation retrains without each one: `rerank-<group>`):
  scores    each scorer's standardised value and rank among the user's candidates; the blend's too
  genre     R(u,i); the user's weight on the item's genres, its top genre's; entropy; confidence
  sequence  the item against the user's last `last_items` items: embedding cosine (max, mean),
            cf item-item weight (sum), genre-vector cosine (mean)
  item      popularity percentile, share of events in the last tenth of the span, age, mean rating
  user      activity percentile, days since the last event, span, mean rating, taste for hits
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from genre_lib.ranking.model import COMPONENTS, genre_r

GROUPS = {
    "scores": [*(f"z_{c}" for c in COMPONENTS), *(f"rank_{c}" for c in COMPONENTS),
               "blend_score", "blend_rank", "blend_gap"],
    "genre": ["genre_r", "genre_match", "genre_top", "genre_entropy", "genre_confidence", "genre_count"],
    "sequence": ["seq_content_max", "seq_content_mean", "seq_cf", "seq_genre"],
    "item": ["item_popularity", "item_recent", "item_age_days", "item_rating"],
    "user": ["user_activity", "user_days_since", "user_span_days", "user_rating", "user_mainstream",
             "popularity_gap"],
}
FEATURES = [f for names in GROUPS.values() for f in names]
# what a reason says for a feature that lifted an item
LABELS = {**{f"z_{c}": f"{c} score" for c in COMPONENTS}, **{f"rank_{c}": f"{c} rank" for c in COMPONENTS},
          "blend_score": "blend score", "blend_rank": "blend rank", "blend_gap": "blend score",
          "genre_r": "genre fit", "genre_match": "your genres", "genre_top": "your top genre",
          "genre_entropy": "taste breadth", "genre_confidence": "clear genre", "genre_count": "genre count",
          "seq_content_max": "like your recent items", "seq_content_mean": "like your recent items",
          "seq_cf": "watched after your recent items", "seq_genre": "genres of your recent items",
          "item_popularity": "popular", "item_recent": "trending", "item_age_days": "catalogue age",
          "item_rating": "well rated", "user_activity": "your activity", "user_days_since": "your recency",
          "user_span_days": "your history span", "user_rating": "your ratings",
          "user_mainstream": "your taste for hits", "popularity_gap": "popularity for you"}


def _pct(x: np.ndarray) -> np.ndarray:
    return rankdata(x) / max(len(x), 1)


def run_lengths(users: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal consecutive values (a user's rows, when grouped)."""
    return np.diff(np.r_[np.flatnonzero(np.r_[True, np.diff(users) != 0]), len(users)]) if len(users) else np.zeros(0, int)


def _rank_within(users: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1-based rank of v (descending, NaN last, ties in row order) among the rows of the same user."""
    key = -np.nan_to_num(np.asarray(v, float), nan=-np.inf)
    n = len(v)
    sizes = run_lengths(users)
    if n and (np.diff(users) >= 0).all() and (sizes == sizes[0]).all():  # candidates: users in runs of M
        m = sizes[0]
        out = np.empty((n // m, m))
        np.put_along_axis(out, np.argsort(key.reshape(-1, m), axis=1, kind="stable"), np.arange(1, m + 1), axis=1)
        return out.ravel()
    order = np.lexsort((key, users))
    sizes = run_lengths(users[order])
    out = np.empty(n)
    out[order] = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1
    return out


@dataclass
class Side:
    """Per-user and per-item facts of the interactions a first-stage model was fitted on."""
    last: np.ndarray       # users x last_items item columns, newest first, -1 where fewer
    user: pd.DataFrame     # index: user row
    item: pd.DataFrame     # index: item column


def side_data(model, df: pd.DataFrame, last_items: int) -> Side:
    u = pd.Index(model.user_ids).get_indexer(df["user_id"].astype(str))
    i = pd.Index(model.item_ids).get_indexer(df["item_id"].astype(str))
    ts = pd.to_datetime(df["ts"], utc=True) if "ts" in df else pd.Series(pd.Timestamp(0, tz="UTC"), index=df.index)
    days = ((ts.max() - ts).dt.total_seconds() / 86400.0).to_numpy()
    rating = df["rating"].to_numpy(float) if "rating" in df else np.full(len(df), np.nan)
    f = pd.DataFrame({"u": u, "i": i, "days": days, "r": rating})
    gu, gi = f.groupby("u"), f.groupby("i")
    pop = _pct(model.popularity)
    act = np.asarray(model.seen.sum(1)).ravel()
    user = pd.DataFrame(index=np.arange(model.n_users))
    user["user_activity"] = _pct(act)
    user["user_days_since"] = gu["days"].min()
    user["user_span_days"] = gu["days"].max() - user["user_days_since"]
    user["user_rating"] = gu["r"].mean()
    user["user_mainstream"] = np.asarray(model.seen @ pop).ravel() / np.maximum(act, 1)
    item = pd.DataFrame(index=np.arange(model.n_items))
    item["item_popularity"] = pop
    window = max(1.0, 0.1 * (days.max() if len(days) else 0.0))
    item["item_recent"] = f.assign(recent=days <= window).groupby("i")["recent"].mean()
    item["item_age_days"] = gi["days"].max()
    g = np.nanmean(rating) if np.isfinite(rating).any() else np.nan
    item["item_rating"] = (gi["r"].sum() + 5.0 * g) / (gi["r"].count() + 5.0)
    d = f.sort_values(["u", "days", "i"], kind="stable").drop_duplicates(["u", "i"])  # newest first
    d = d.assign(k=d.groupby("u").cumcount())
    d = d[d["k"] < last_items]
    last = np.full((model.n_users, last_items), -1, np.int64)
    last[d["u"].to_numpy(), d["k"].to_numpy()] = d["i"].to_numpy()
    return Side(last=last, user=user, item=item)


def _masked_mean_max(sim: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = ok.sum(1)
    mean = np.where(n > 0, (sim * ok).sum(1) / np.maximum(n, 1), np.nan)
    mx = np.where(n > 0, np.where(ok, sim, -np.inf).max(1), np.nan)
    return mean, mx


_TABLE_ENTRIES = 1 << 25  # an item x item cosine table up to 128 MB (float32); above, row by row


def _slot_cos(vec: np.ndarray, items: np.ndarray, last: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """cos(vec[item], vec[last item]) per row and last-item slot (vec rows unit or zero)."""
    vec = np.ascontiguousarray(vec, np.float32)
    safe = np.maximum(last, 0)
    if len(vec) ** 2 <= _TABLE_ENTRIES:  # one matrix product, then a gather: far cheaper than per row
        return (vec @ vec.T)[items[:, None], safe]
    out = np.zeros(last.shape, np.float32)
    for s in range(0, len(items), chunk):
        e = slice(s, s + chunk)
        out[e] = np.einsum("nd,nld->nl", vec[items[e]], vec[safe[e]])
    return out


def features(model, side: Side, top) -> pd.DataFrame:
    """One row per (user, candidate) of `top` (a TopK with every scorer gathered), FEATURES columns,
    float32, finite (a missing input is 0: its scorer absent, no rating, no history)."""
    U, I = top.users, top.items
    cols = {}
    for c in COMPONENTS:
        z = np.asarray(top.components[c], float)
        cols[f"z_{c}"], cols[f"rank_{c}"] = z, _rank_within(U, z)
    cols["blend_score"], cols["blend_rank"] = top.score, top.rank
    cols["blend_gap"] = top.score - pd.Series(top.score).groupby(U).transform("max").to_numpy()
    if model.genres:
        w = model.user_genre
        tot = w.sum(1, keepdims=True)
        wn = np.divide(w, tot, out=np.zeros_like(w), where=tot > 0).astype(np.float32)
        carries = ((model.item_genre >= 0.5) & model.item_has_genre[:, None]).astype(np.float32)
        cols["genre_r"] = genre_r(model, U, I)
        cols["genre_match"] = np.einsum("nc,nc->n", wn[U], carries[I])
        cols["genre_top"] = carries[I, wn.argmax(1)[U]]
        cols["genre_entropy"] = (-(wn * np.log(np.where(wn > 0, wn, 1.0))).sum(1))[U]
        cols["genre_confidence"] = model.item_genre.max(1)[I]
        cols["genre_count"] = carries.sum(1)[I]
    last = side.last[U]
    ok = last >= 0
    if model.item_emb is not None:
        cols["seq_content_mean"], cols["seq_content_max"] = _masked_mean_max(_slot_cos(model.item_emb, I, last), ok)
    if model.ease is not None:
        pos = np.full(model.n_items, -1)
        pos[model.ease_items] = np.arange(len(model.ease_items))
        lp, ip = pos[last], pos[I][:, None]
        valid = ok & (lp >= 0) & (ip >= 0)
        cols["seq_cf"] = (model.ease[np.where(valid, lp, 0), np.where(valid, ip, 0)] * valid).sum(1)
    if model.genres:
        g = model.item_genre / np.maximum(np.linalg.norm(model.item_genre, axis=1, keepdims=True), 1e-12)
        cols["seq_genre"] = _masked_mean_max(_slot_cos(g.astype(np.float32), I, last), ok)[0]
    for name in GROUPS["item"]:
        cols[name] = side.item[name].to_numpy()[I]
    for name in GROUPS["user"][:-1]:
        cols[name] = side.user[name].to_numpy()[U]
    cols["popularity_gap"] = cols["item_popularity"] - cols["user_mainstream"]
    x = np.zeros((len(U), len(FEATURES)), np.float32, order="F")  # column by column: contiguous writes
    for j, f in enumerate(FEATURES):
        if f in cols:
            x[:, j] = cols[f]
    x[~np.isfinite(x)] = 0.0
    return pd.DataFrame(x, columns=FEATURES, copy=False)


