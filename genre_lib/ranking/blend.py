"""Hybrid ranker: four scorers over (user, item), normalised and blended, all-user top-k in blocks.

    fit / fit_items / fit_users (model.py)             -> Model   a split or all data, or one block of users
    recommend(model, weights, top_n, block_users)      -> TopK (user, rank, item, score, components)
    recommendations_frame(model, topk, rc)             -> the `recommendations` table (explain.py: reasons)
    run(ctx)                                           the stage

Scorers (each a users x items matrix, produced one block of users at a time):
  genre       R(u,i) = sum_c w_uc s(i,c) / sum_c w_uc; w_uc the `user_genre_weights` of genres.py
              (the night's published table, or its numpy twin on a split), s(i,c) item_genre_scores
              (`genre.gamma` where missing); ranked by the log of R or of its `genre.scorer` form (the
              column `genre_r` holds R itself); `mixture`: log P(i|u) of genre_lib/ranking/mixture.py
  content     cosine(user profile, item embedding); profile = time-decayed, rating-weighted mean
  cf          item-item autoencoder, closed form: DLAE (EASE^R with dropout emphasis; past
              `cf.max_items` items a sparse cosine item-kNN takes B's place); score = x_u B,
              x_u binary, or (rating / rating_max) ** `cf.rating_power` per rated item (B is then fit
              on the same weighted matrix), times, with `cf.recency_half_life` h, 0.5^(k/h) on the
              user's k-th newest distinct item (what a user did last predicts what comes next)
  popularity  log(1 + distinct users) of the item
Each is standardised per user over the catalogue (mean 0, sd 1) before blending, so a weight of 2
means "twice the pull", whatever the scorer's native scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from genre_lib.lake.pseudonym import pseudonymize
from genre_lib.ranking.explain import explain
from genre_lib.ranking.model import COMPONENTS, Model, genre_r
from genre_lib.ranking.topk import block_topk_many

GENRE_EPS = 1e-3  # floor of R inside the log: an item outside all the user's genres
# A block's dense users x items float32 matrices (each kept scorer, the blend, the seen mask and the
# temporaries of one scorer) stay within this many bytes: with 7 matrices, past ~38k items a block holds
# fewer users than block_users (ML-25M's 62k items: ~600), so ranking memory does not grow with the catalogue.
BLOCK_BYTES = 1 << 30


def block_rows(block_users: int, n_items: int, matrices: int) -> int:
    """Users per ranking block: block_users, or fewer where `matrices` users x items float32 matrices
    would pass BLOCK_BYTES."""
    return int(max(1, min(block_users, BLOCK_BYTES // max(1, 4 * n_items * matrices))))


# --------------------------------------------------------------------------------------------
# scoring and blocked top-k
# --------------------------------------------------------------------------------------------
def _standardise(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(1, keepdim=True)
    sd = x.std(1, keepdim=True)
    return (x - mean) / torch.where(sd > 1e-9, sd, torch.ones_like(sd))


def component_block(model: Model, name: str, rows: np.ndarray) -> torch.Tensor:
    """Raw scores of one scorer for a block of user rows: len(rows) x n_items, float32."""
    if name == "genre":
        # log R: same ranking as R alone, and in the blend a product with the popularity prior
        # (P(item | user) ~ taste share x popularity within the genre), not a sum
        if model.user_taste is not None:  # P(i|u) x items: mean 1, on R's scale for the floor
            r = torch.from_numpy(model.user_taste[rows].astype(np.float32)) @ torch.from_numpy(
                (model.genre_phi * model.n_items).astype(np.float32)).T
            return torch.log(r + GENRE_EPS)
        s = model.item_genre
        if model.genre_scale is not None:
            s = s * model.genre_scale[None, :] * model.genre_item_weight[:, None]
        r = torch.from_numpy(model.user_genre[rows].astype(np.float32)) @ torch.from_numpy(s.astype(np.float32)).T
        return torch.log(r + GENRE_EPS)
    if name == "content":
        return torch.from_numpy(model.user_profile[rows]) @ torch.from_numpy(model.item_emb).T
    if name == "popularity":
        return torch.from_numpy(model.popularity).expand(len(rows), -1).clone()
    if name == "cf":
        out = torch.zeros(len(rows), model.n_items)
        x = (model.seen if model.cf_input is None else model.cf_input)[rows][:, model.ease_items]
        y = x @ (model.ease if model.knn is None else model.knn)
        out[:, torch.from_numpy(model.ease_items)] = torch.from_numpy(np.asarray(y.toarray() if sp.issparse(y) else y,
                                                                                 np.float32))
        return out
    raise ValueError(f"unknown component {name!r}")


def active_weights(model: Model, weights) -> dict[str, float]:
    """Weights of the scorers that are available and > 0 (a dict or RecommendWeights)."""
    w = weights if isinstance(weights, dict) else weights.model_dump()
    return {c: float(w.get(c, 0.0)) for c in COMPONENTS if w.get(c, 0.0) > 0 and model.available.get(c)}


@dataclass
class TopK:
    users: np.ndarray      # user row per entry
    items: np.ndarray      # item column per entry
    rank: np.ndarray       # 1..k
    score: np.ndarray
    components: dict       # name -> standardised scorer value per entry (nan where unused)
    weights: dict
    reasons: Optional[np.ndarray] = None  # set by the re-ranker (rerank.py); None: explain.py's

    def frame(self, model: Model) -> pd.DataFrame:
        return ranked_frame(model, self.users, self.items, self.rank)


def ranked_frame(model: Model, users: np.ndarray, items: np.ndarray, rank: np.ndarray) -> pd.DataFrame:
    """Ranked lists as the metrics read them: (user_id, item_id, rank) of `model`'s user rows and item columns."""
    return pd.DataFrame({"user_id": model.user_ids[users], "item_id": model.item_ids[items], "rank": rank})


def recommend(model: Model, weights, top_n: int, block_users: int, users: Optional[np.ndarray] = None,
              exclude_seen: bool = True, candidates: Optional[np.ndarray] = None, gather: tuple = ()) -> TopK:
    """Top `top_n` unseen items for every user (or the given user rows) under a blend of scorers;
    only among the `candidates` item columns when given (scorers still standardise over all). The
    available scorers named in `gather` get their components filled too, at weight 0 if unused."""
    return recommend_many(model, {None: weights}, top_n, block_users, users, exclude_seen, candidates, gather)[None]


def recommend_many(model: Model, blends: dict, top_n: int, block_users: int, users: Optional[np.ndarray] = None,
                   exclude_seen: bool = True, candidates: Optional[np.ndarray] = None, gather: tuple = ()) -> dict:
    """`recommend` for several blends (name -> weights) of the same model and users at once: each
    block's scorers are computed and standardised once, then every blend ranks from them (an
    evaluation's variants cost about one ranking, not one each). Returns name -> TopK."""
    ws = {name: active_weights(model, weights) for name, weights in blends.items()}
    for name, w in ws.items():
        if not w:
            raise ValueError(f"no available scorer has a weight > 0{'' if name is None else f' in {name!r}'}")
    users = np.arange(model.n_users) if users is None else np.asarray(users)
    kept = list(dict.fromkeys([*(c for c in COMPONENTS if any(c in w for w in ws.values())),
                               *(c for c in gather if model.available.get(c))]))
    comps: dict = {(name, c): [] for name, w in ws.items() for c in [*w, *(c for c in gather if c not in w and c in kept)]}
    blocked = None
    if candidates is not None:
        blocked = torch.ones(model.n_items, dtype=torch.bool)
        blocked[torch.from_numpy(np.asarray(candidates, dtype=np.int64))] = False
    current: dict[str, torch.Tensor] = {}

    def score_blocks(rows):
        current.clear()
        for c in kept:
            current[c] = _standardise(component_block(model, c, users[rows]))
        for name, w in ws.items():
            total = None
            for c, x in w.items():
                total = x * current[c] if total is None else total.add_(current[c], alpha=x)
            if blocked is not None:
                total[:, blocked] = float("-inf")
            yield name, total

    def keep_components(name, rows, v, i):
        for key in comps:
            if key[0] == name:
                comps[key].append(torch.gather(current[key[1]], 1, i))

    seen = model.seen[users] if exclude_seen else None
    rows = block_rows(block_users, model.n_items, len(kept) + 4)
    ranked = block_topk_many(score_blocks, list(ws), len(users), top_n, rows, seen, keep_components)
    out = {}
    for name, (vals, idx) in ranked.items():
        k = idx.shape[1]
        valid = torch.isfinite(vals).numpy().ravel()
        top = TopK(users=np.repeat(users, k)[valid], items=idx.numpy().ravel()[valid],
                   rank=np.tile(np.arange(1, k + 1), len(users))[valid], score=vals.numpy().ravel()[valid],
                   components={}, weights=ws[name])
        for c in COMPONENTS:
            top.components[c] = (torch.cat(comps[name, c]).numpy().ravel()[valid] if comps.get((name, c))
                                 else np.full(valid.sum(), np.nan, np.float32))
        out[name] = top
    return out


# --------------------------------------------------------------------------------------------
# the output table
# --------------------------------------------------------------------------------------------
def recommendations_frame(model: Model, topk: TopK, rc, variant: Optional[str] = None) -> pd.DataFrame:
    """The `recommendations` table. Component columns hold the standardised scorer values, so
    score = sum of weight x component over the scorers in use (unused ones are null)."""
    users = model.user_ids[topk.users]
    if rc.privacy.pseudonymize_users:
        uniq, inv = np.unique(users, return_inverse=True)
        users = pseudonymize(uniq, rc.privacy.pseudonym_key_env)[inv]
    return pd.DataFrame({
        "user_id": users, "rank": topk.rank.astype("int32"), "item_id": model.item_ids[topk.items],
        "score": topk.score.astype(float),
        "genre_score": topk.components["genre"].astype(float),
        "content_score": topk.components["content"].astype(float),
        "cf_score": topk.components["cf"].astype(float),
        "popularity_score": topk.components["popularity"].astype(float),
        "genre_r": genre_r(model, topk.users, topk.items),
        "reason": explain(model, topk) if topk.reasons is None else topk.reasons,
        "variant": variant,  # the users' A/B variant (ab.py); None without A/B
    })


def score_users(model: Model, rc, variant: Optional[str], users: np.ndarray) -> pd.DataFrame:
    """A block of user rows ranked and explained: what recommend.execution.engine=spark runs on executors."""
    return recommendations_frame(model, recommend(model, rc.weights, rc.top_n, rc.execution.block_users, users=users), rc, variant)
