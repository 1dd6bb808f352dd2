"""The cf scorer's matrices: the item-item autoencoder of the EASE family (closed form) and the
per-user input weights it reads (rating and recency)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def ease(x: sp.csr_matrix, lam: float, dropout: float = 0.0) -> np.ndarray:
    """Item-item weights of the EASE family from the users x items matrix x: ease_from_gram(X'X)."""
    return ease_from_gram((x.T @ x).toarray().astype(np.float64), lam, dropout)


def ease_from_gram(g: np.ndarray, lam: float, dropout: float = 0.0) -> np.ndarray:
    """Item-item weights of the EASE family, closed form, from the Gram matrix G = X'X (float64,
    changed in place; a sum of X_b'X_b over user blocks is the same G); float32 result.
    dropout = 0: EASE^R, B = I - P diagMat(1/diag P), P = (G + lam I)^-1, zero diagonal.
    dropout = p > 0: DLAE, B = (G + L)^-1 G with L = lam I + p/(1-p) diag(G): dropout noise on
    the input as a closed-form penalty; it keeps the model off the identity without the diagonal
    constraint."""
    if dropout > 0:
        pen = lam + dropout / (1.0 - dropout) * np.diag(g)
        a = g.copy()
        a[np.diag_indices_from(a)] += pen
        return np.linalg.solve(a, g).astype(np.float32)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def recency_matrix(df: pd.DataFrame, user_index: pd.Index, item_index: pd.Index, half_life: float) -> sp.csr_matrix:
    """users x items: 0.5 ** (k / half_life) on each distinct item of a user, k = 0 for the newest
    (by its latest ts, ties by item id), 1 for the one before, ... Position, not age in days: users
    rate at very different paces, and it is the order that carries what they look at next."""
    d = df.sort_values(["user_id", "ts", "item_id"], kind="stable").drop_duplicates(["user_id", "item_id"], keep="last")
    k = d.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy(float)
    return sp.csr_matrix((np.power(0.5, k / half_life).astype(np.float32),
                          (user_index.get_indexer(d["user_id"]), item_index.get_indexer(d["item_id"]))),
                         shape=(len(user_index), len(item_index)))


def rating_matrix(df: pd.DataFrame, user_index: pd.Index, item_index: pd.Index, power: float,
                  rating_max: float) -> sp.csr_matrix:
    """users x items: (rating / rating_max) ** power on each distinct item of a user (its highest
    rating when rated twice; 1 where an event has no rating)."""
    r = (df["rating"].astype(float) / rating_max).clip(lower=0, upper=1) if "rating" in df else pd.Series(1.0, index=df.index)
    d = pd.DataFrame({"u": user_index.get_indexer(df["user_id"]), "i": item_index.get_indexer(df["item_id"]),
                      "w": np.power(r.fillna(1.0).to_numpy(float), power)})
    d = d.groupby(["u", "i"], sort=False)["w"].max().reset_index()
    return sp.csr_matrix((d["w"].to_numpy(np.float32), (d["u"], d["i"])), shape=(len(user_index), len(item_index)))


def item_knn(x, neighbours: int, block: int = 1024) -> sp.csr_matrix:
    """items x items, row i = the `neighbours` items most similar to i by the cosine of their user
    columns in x (i itself excluded), float32 sparse. The cf model past EASE's reach: built a block
    of items at a time, so memory grows with block x items and the kept neighbours, not items^2.
    x is a users x items matrix, or a function returning an iterator over the row blocks of one (user
    blocks, loaded one at a time: the similarity is their sum, so every user need not be in memory)."""
    if sp.issparse(x):
        whole = sp.csc_matrix(x, dtype=np.float32)  # converted once, not per block of items
        parts = lambda: iter([whole])  # noqa: E731
    else:
        parts = x
    norms, n = None, None
    for xb in parts():
        sq = np.asarray(sp.csc_matrix(xb, dtype=np.float32).power(2).sum(0), dtype=np.float64).ravel()
        norms, n = (sq if norms is None else norms + sq), xb.shape[1]
    norms = np.sqrt(norms).astype(np.float32)
    k = min(neighbours, n - 1)
    rows, cols, vals = [], [], []
    for s in range(0, n, block):
        sim = None
        for xb in parts():
            xc = sp.csc_matrix(xb, dtype=np.float32)
            part = (xc[:, s:s + block].T @ xc).toarray()
            sim = part if sim is None else sim + part
        sim /= np.maximum(norms[s:s + block, None] * norms[None, :], 1e-12)
        sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = 0.0
        if k <= 0:
            continue
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        v = np.take_along_axis(sim, top, 1)
        keep = v > 0
        rows.append(np.repeat(np.arange(s, s + len(sim)), k)[keep.ravel()])
        cols.append(top.ravel()[keep.ravel()])
        vals.append(v.ravel()[keep.ravel()])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n),
                         dtype=np.float32)
