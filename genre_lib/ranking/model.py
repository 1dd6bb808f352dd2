"""The hybrid ranker's fitted state (Model) and its fit, whole or in blocks of users:

    fit(interactions, catalogue, user_weights, rc, gc, rating_max) -> Model   a split or all data
    fit_items(blocks, catalogue, rc, rating_max) -> Model      the item side, summed over user blocks
    fit_users(items, interactions, user_weights, rc, gc, rating_max) -> Model   one block's users on it

fit is fit_items over one block then fit_users; blend.py scores and ranks a Model.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genre_lib.config.data import GenresConfig
from genre_lib.config.ranking import RecommendConfig
from genre_lib.lake.catalogue import Catalogue
from genre_lib.ranking import mixture
from genre_lib.ranking.cf import ease_from_gram, item_knn, rating_matrix, recency_matrix
from genre_lib.ranking.interest import genre_weights

COMPONENTS = ("genre", "content", "cf", "popularity")  # the scorers, in blend order (Model.available's keys)


@dataclass
class Model:
    user_ids: np.ndarray                  # str, index = user row
    item_ids: np.ndarray                  # str, index = item column
    genres: list[str]
    seen: sp.csr_matrix                   # users x items, 1 where the user interacted (training)
    user_genre: np.ndarray                # users x genres, w_uc of user_genre_weights, float64
    item_genre: np.ndarray                # items x genres, s(i,c) with gamma where unknown, float64
    item_has_genre: np.ndarray            # items, bool
    popularity: np.ndarray                # items, float32: log1p(distinct users)
    ease: Optional[np.ndarray] = None     # cf_items x cf_items, float32
    ease_items: Optional[np.ndarray] = None   # item columns covered by `ease` (or `knn`)
    knn: Optional[sp.csr_matrix] = None   # cf_items x cf_items sparse item-kNN, past recommend.cf.max_items
    cf_input: Optional[sp.csr_matrix] = None  # users x items, rating/recency-weighted x_u (None: `seen`)
    cf_rating: Optional[sp.csr_matrix] = None  # users x items, rating weights B was fit on (None: `seen`)
    user_profile: Optional[np.ndarray] = None  # users x d, unit rows (zeros when no embedded history)
    item_emb: Optional[np.ndarray] = None      # items x d, unit rows (zeros when no embedding)
    titles: Optional[np.ndarray] = None
    genre_scale: Optional[np.ndarray] = None        # genres: n_items / M_c (recommend.genre.scorer share, popularity)
    genre_item_weight: Optional[np.ndarray] = None  # items: 1 (share) or training users + 1 (popularity)
    item_users: Optional[np.ndarray] = None    # items, float64: distinct training users (all blocks)
    genre_phi: Optional[np.ndarray] = None     # items x genres, P(i|c) (recommend.genre.scorer mixture)
    genre_sums: Optional[np.ndarray] = None    # items x genres, the EM's summed responsibilities phi came from
    user_taste: Optional[np.ndarray] = None    # users x genres, tau_u (recommend.genre.scorer mixture)
    history_end: Optional[pd.Timestamp] = None  # newest ts of the training data (content decay's "now")
    available: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _content_weights(df: pd.DataFrame, gc: GenresConfig, now: pd.Timestamp, rating_max: float) -> np.ndarray:
    """How much each interaction counts in the content profile: its event weight, decayed with the
    genres stage's `half_life_days` (one taste-decay knob), times rating / rating_max when rated.
    Not interest.py's rule: a profile averages embeddings, so every event counts by its weight and
    rating whatever `rating_weighted` says, decayed from the newest interaction (`now`), not the night."""
    w = df["event"].map(gc.event_weights).fillna(1.0).to_numpy(float) if "event" in df else np.ones(len(df))
    if gc.half_life_days and "ts" in df:
        age_days = (now - df["ts"]).dt.total_seconds().to_numpy() / 86400.0
        w = w * np.power(0.5, np.clip(age_days, 0, None) / gc.half_life_days)
    if "rating" in df:
        w = w * (df["rating"].to_numpy(float) / rating_max)
        w = np.where(np.isnan(w), 1.0, w)
    return w


def item_genre_matrix(scores: Optional[pd.DataFrame], item_ids: np.ndarray, gamma: float,
                      genres: Optional[list[str]] = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """s(i,c): items x genres (float64) from (item_id, genre, probability); gamma for a missing
    (item, genre) score."""
    if scores is None or scores.empty:
        return np.zeros((len(item_ids), 0)), np.zeros(len(item_ids), bool), []
    genres = genres or sorted(scores["genre"].astype(str).unique())
    rows = pd.Index(item_ids).get_indexer(scores["item_id"].astype(str))
    cols = pd.Index(genres).get_indexer(scores["genre"].astype(str))
    ok = (rows >= 0) & (cols >= 0)
    s = np.full((len(item_ids), len(genres)), float(gamma))
    s[rows[ok], cols[ok]] = scores["probability"].to_numpy(float)[ok]
    has = np.zeros(len(item_ids), bool)
    has[rows[ok]] = True
    return s, has, genres


def genre_r(model: "Model", users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The seed's R(u,i) = sum_c w_uc s(i,c) / sum_c w_uc per (user row, item column) pair, float64;
    NaN for a user without genre weights."""
    w = model.user_genre[users]
    tot = w.sum(1)
    num = np.einsum("pc,pc->p", w, model.item_genre[items]) if len(w) else np.zeros(0)
    return np.where(tot > 0, num / np.where(tot > 0, tot, 1.0), np.nan)


def user_weight_matrix(weights: Optional[pd.DataFrame], user_index: pd.Index, genres: list[str]) -> np.ndarray:
    """w_uc as users x genres (float64) from `user_genre_weights` rows; zeros for a user or genre
    without a row (a user the genres stage left out has no genre taste, not a uniform one)."""
    w = np.zeros((len(user_index), len(genres)))
    if weights is None or weights.empty or not genres:
        return w
    u = user_index.get_indexer(weights["user_id"].astype(str))
    c = pd.Index(genres).get_indexer(weights["genre"].astype(str))
    ok = (u >= 0) & (c >= 0)
    w[u[ok], c[ok]] = weights["weight"].to_numpy(float)[ok]
    return w


def cf_input_matrix(model: "Model", df: pd.DataFrame, half_life: Optional[float]) -> Optional[sp.csr_matrix]:
    """x_u for every user: the rating weights (or `seen`) times the recency weights when h is set;
    None when x_u is just `seen`."""
    if not half_life or "ts" not in df:
        return model.cf_rating
    rec = recency_matrix(df, pd.Index(model.user_ids), pd.Index(model.item_ids), half_life)
    return rec if model.cf_rating is None else rec.multiply(model.cf_rating).tocsr()


def _prepared(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["user_id"] = df["user_id"].astype(str)
    df["item_id"] = df["item_id"].astype(str)
    if "ts" in df:
        df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df


def fit(interactions: pd.DataFrame, catalogue: Catalogue, user_weights: Optional[pd.DataFrame],
        rc: RecommendConfig, gc: GenresConfig, rating_max: float) -> Model:
    """Fit every scorer on `interactions` (user_id, item_id[, event, rating, ts]) and the catalogue.
    `user_weights` are `user_genre_weights` rows computed on the same interactions (the night's
    published table, or interest.user_genre_weights_pandas on a split); `rating_max` is the clean
    stage's upper rating bound. The same as fit_items over one block, then fit_users."""
    df = _prepared(interactions)
    return fit_users(fit_items(lambda: iter([df]), catalogue, rc, rating_max), df, user_weights, rc, gc, rating_max)


def fit_split(train: pd.DataFrame, catalogue: Catalogue, cfg, run_date, rc: Optional[RecommendConfig] = None,
              totals: Optional[pd.Series] = None) -> Model:
    """`fit` on a split of the history alone (evaluation, the re-ranker's training, tuning): its genre
    weights by the genre_weights stage's rule on that split, anchored at `run_date` (`totals`: the
    shrinkage prior over every block of the split); `rc` default cfg.recommend."""
    weights = genre_weights(train, catalogue, cfg.genres, run_date, totals)
    return fit(train, catalogue, weights, rc or cfg.recommend, cfg.genres, cfg.clean.rating_max)


def fit_items(blocks, catalogue: Catalogue, rc: RecommendConfig, rating_max: float) -> Model:
    """The item side of a Model (every item field; no users yet) from the interactions given as
    `blocks()`, an iterator over frames that each hold all the rows of their users (user blocks; read
    twice): what every user block's fit_users shares. Only the item-side sums (distinct users per
    item, the Gram matrix X'X, kNN similarities) are kept across blocks, so memory grows with the
    catalogue and one block, not with users or interactions."""
    counts, end, rows = pd.Series(dtype=float), None, 0
    for raw in blocks():
        df = _prepared(raw)
        rows += len(df)
        counts = counts.add(df.drop_duplicates(["user_id", "item_id"])["item_id"].value_counts(), fill_value=0.0)
        if "ts" in df and len(df):
            end = df["ts"].max() if end is None else max(end, df["ts"].max())
    item_ids = np.asarray(sorted(set(catalogue.item_ids()) | set(counts.index)), dtype=object)
    iidx = pd.Index(item_ids)
    users_per_item = counts.reindex(iidx, fill_value=0.0).to_numpy(float)

    s, has, genres = item_genre_matrix(catalogue.item_genre_scores, item_ids, rc.genre.gamma)
    model = Model(user_ids=np.asarray([], dtype=object), item_ids=item_ids, genres=genres,
                  seen=sp.csr_matrix((0, len(item_ids)), dtype=np.float32), user_genre=np.zeros((0, len(genres))),
                  item_genre=s, item_has_genre=has, popularity=np.log1p(users_per_item).astype(np.float32),
                  item_users=users_per_item, history_end=end if end is not None else pd.Timestamp.now(tz="UTC"))
    if rc.genre.scorer in ("share", "popularity") and len(genres):
        model.genre_item_weight = np.ones(len(item_ids)) if rc.genre.scorer == "share" else users_per_item + 1.0
        model = with_item_genres(model, s, has)
    if rc.genre.scorer == "mixture" and len(genres):
        member = mixture.support(s, has)
        phi = mixture.item_start(member, users_per_item)
        with tempfile.TemporaryDirectory(prefix="genre-mixture-") as tmp:  # each block's history once, read per pass
            paths = []
            for b, raw in enumerate(blocks()):
                df = _prepared(raw)
                paths.append(f"{tmp}/{b}.npz")
                sp.save_npz(paths[-1], _seen(df, pd.Index(df["user_id"].unique()), iidx), compressed=False)
            for _ in range(rc.genre.mixture_passes):  # EM: every block's tastes for this phi, then the next phi
                sums = np.zeros_like(phi)
                for path in paths:
                    x = sp.load_npz(path)
                    sums += mixture.item_update(x, phi, mixture.tastes(x, phi, None, rc.genre.mixture_steps))
                phi = mixture.item_finish(sums, member)
        model.genre_phi, model.genre_sums = phi, sums
    model.available = {"genre": len(genres) > 0, "cf": rows > 0, "popularity": rows > 0, "content": False}

    # cf over every item with interactions: EASE while its dense Gram inverse (O(items^3)) fits
    # recommend.cf.max_items, a sparse item-kNN beyond
    cover = np.flatnonzero(users_per_item > 0)
    if len(cover):
        model.ease_items = cover

        def cf_blocks():  # each user block's x (binary, or the rating weights B is fit on), cf items only
            for raw in blocks():
                df = _prepared(raw)
                uidx = pd.Index(df["user_id"].unique())
                x = (rating_matrix(df, uidx, iidx, rc.cf.rating_power, rating_max) if rc.cf.rating_power > 0
                     else _seen(df, uidx, iidx))
                yield x[:, cover]

        if len(cover) > rc.cf.max_items:
            with tempfile.TemporaryDirectory(prefix="genre-knn-") as tmp:  # the blocks once, read per item block
                paths = []
                for b, x in enumerate(cf_blocks()):
                    paths.append(f"{tmp}/{b}.npz")
                    sp.save_npz(paths[-1], x.tocsc(), compressed=False)  # item_knn slices columns
                model.knn = item_knn(lambda: (sp.load_npz(p) for p in paths), rc.cf.knn_neighbours)
        else:
            g = np.zeros((len(cover), len(cover)))
            for x in cf_blocks():
                g += (x.T @ x).toarray()
            model.ease = ease_from_gram(g, rc.cf.reg, rc.cf.dropout)

    if catalogue.embeddings is not None and len(catalogue.embeddings):
        emb = catalogue.embeddings
        rows_ = iidx.get_indexer(emb["item_id"].astype(str))
        mat = np.stack(emb["vector"].to_numpy()).astype(np.float32)
        e = np.zeros((len(iidx), mat.shape[1]), np.float32)
        e[rows_[rows_ >= 0]] = mat[rows_ >= 0]
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        model.item_emb, model.user_profile = e, np.zeros((0, e.shape[1]), np.float32)
        model.available["content"] = True

    if catalogue.items is not None and "title" in catalogue.items:
        t = catalogue.items.assign(item_id=catalogue.items["item_id"].astype(str)).drop_duplicates("item_id")
        model.titles = t.set_index("item_id")["title"].reindex(item_ids).to_numpy(dtype=object)
    return model


def with_item_genres(model: Model, s: np.ndarray, has: np.ndarray) -> Model:
    """`model` with the item genre scores s (items x genres, as item_genre_matrix gives them) in every
    field the genre forms derive from them (evaluate's genre-labels swaps in the true labels)."""
    out = replace(model, item_genre=s, item_has_genre=has)
    if model.genre_item_weight is not None:
        # share / popularity: s(i,c) x item_weight_i / M_c, M_c = sum_j s(j,c) item_weight_j, scaled to mean ~1
        mass = (s * model.genre_item_weight[:, None]).sum(0)
        out.genre_scale = np.where(mass > 0, model.n_items / np.where(mass > 0, mass, 1.0), 0.0)
    if model.genre_sums is not None:  # mixture: phi's prior is the item's genre scores
        out.genre_phi = mixture.item_finish(model.genre_sums, mixture.support(s, has))
    return out


def _seen(df: pd.DataFrame, uidx: pd.Index, iidx: pd.Index) -> sp.csr_matrix:
    seen = sp.csr_matrix((np.ones(len(df), np.float32), (uidx.get_indexer(df["user_id"]), iidx.get_indexer(df["item_id"]))),
                         shape=(len(uidx), len(iidx)))
    seen.sum_duplicates()
    seen.data[:] = 1.0
    return seen


def fit_users(items: Model, interactions: pd.DataFrame, user_weights: Optional[pd.DataFrame],
              rc: RecommendConfig, gc: GenresConfig, rating_max: float) -> Model:
    """The Model of the users in `interactions` (every row of each), on the item side `items`
    (fit_items over data that includes these rows): seen items, genre weights (`user_weights` rows,
    others ignored), cf input and content profile. Equal, user for user, to fit on all the data."""
    df = _prepared(interactions)
    user_ids = np.asarray(sorted(df["user_id"].unique()), dtype=object)
    uidx, iidx = pd.Index(user_ids), pd.Index(items.item_ids)
    seen = _seen(df, uidx, iidx)
    model = replace(items, user_ids=user_ids, seen=seen, user_genre=user_weight_matrix(user_weights, uidx, items.genres))
    if items.genre_phi is not None:  # the published weights are where each user's EM starts
        model.user_taste = mixture.tastes(seen, items.genre_phi, model.user_genre, rc.genre.mixture_steps)
    if items.ease_items is not None:
        if rc.cf.rating_power > 0:
            model.cf_rating = rating_matrix(df, uidx, iidx, rc.cf.rating_power, rating_max)
        model.cf_input = cf_input_matrix(model, df, rc.cf.recency_half_life)
    if items.item_emb is not None:
        w = _content_weights(df, gc, items.history_end, rating_max)
        wm = sp.csr_matrix((w, (uidx.get_indexer(df["user_id"]), iidx.get_indexer(df["item_id"]))), shape=seen.shape)
        prof = np.asarray(wm @ items.item_emb, dtype=np.float32)
        prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
        model.user_profile = prof
    return model
