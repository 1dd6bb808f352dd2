"""Reason strings for ranked items, from a fitted `recommend.Model` and its `TopK`."""
from __future__ import annotations

import numpy as np


def explain(model, topk) -> np.ndarray:
    """One reason per entry: the dominant scorer (largest weighted contribution), the user's
    highest-weighted genre that the item carries, and the most similar item in the user's history."""
    n = len(topk.items)
    names = list(topk.weights)  # in the ranker's component order
    contrib = np.stack([topk.weights[c] * topk.components[c] for c in names], 1)
    dominant = np.asarray(names)[contrib.argmax(1)] if n else np.array([], dtype=object)

    genre = np.full(n, "", dtype=object)
    if model.genres:
        carries = model.item_genre[topk.items] >= 0.5
        carries &= model.item_has_genre[topk.items, None]
        pref = model.user_genre[topk.users] * carries
        best = pref.argmax(1)
        genre = np.where(pref.max(1) > 0, np.asarray(model.genres, dtype=object)[best], "")

    similar = _most_similar_in_history(model, topk)
    like = np.full(n, "", dtype=object)
    has = similar >= 0
    if has.any():  # the title of the history item, its id where it has none
        ids = model.item_ids[similar[has]].astype(object)
        titles = model.titles[similar[has]] if model.titles is not None else ids
        named = np.fromiter((isinstance(t, str) and t != "" for t in titles), bool, len(titles))
        like[has] = " | like: " + np.where(named, titles, ids).astype(object)
    # object-array concatenation: the same strings as joining the parts row by row, without the loop
    return dominant.astype(object) + np.where(genre != "", " | genre: " + genre.astype(object), "").astype(object) + like


def _most_similar_in_history(model, topk) -> np.ndarray:
    """Item column of the history item closest to each recommended item: embedding cosine when
    embeddings exist, else the EASE weight, else genre overlap. -1 when the user has no history."""
    out = np.full(len(topk.items), -1, np.int64)
    if model.item_emb is not None:
        vec = model.item_emb
    else:
        vec = None
    ease_pos = None
    if vec is None and model.ease is not None:
        ease_pos = np.full(model.n_items, -1)
        ease_pos[model.ease_items] = np.arange(len(model.ease_items))
    seen = model.seen
    order = np.argsort(topk.users, kind="stable")
    bounds = np.flatnonzero(np.diff(topk.users[order])) + 1
    for grp in np.split(order, bounds):
        if not len(grp):
            continue
        u = topk.users[grp[0]]
        hist = seen.indices[seen.indptr[u]:seen.indptr[u + 1]]
        if not len(hist):
            continue
        items = topk.items[grp]
        if vec is not None:
            sim = vec[hist] @ vec[items].T
        elif ease_pos is not None:
            hp, ip = ease_pos[hist], ease_pos[items]
            sim = np.where((hp[:, None] >= 0) & (ip[None, :] >= 0), model.ease[hp][:, ip], -np.inf)
        else:
            sim = model.item_genre[hist] @ model.item_genre[items].T
        out[grp] = hist[sim.argmax(0)]
    return out
