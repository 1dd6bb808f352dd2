"""Hybrid ranker: four scorers over (user, item), normalised and blended, all-user top-k in blocks.

    fit(interactions, catalogue, user_weights, rc, gc, rating_max) -> Model   a split or all data
    recommend(model, weights, top_n, block_users)      -> TopK (user, rank, item, score, components)
    recommendations_frame(model, topk, rc)             -> the `recommendations` table (explain.py: reasons)
    fit_items(blocks, ...) / fit_users(items, df, ...)  fit in blocks of users (what run does at scale)
    run(ctx)                                           the stage

Scorers (each a users x items matrix, produced one block of users at a time):
  genre       R(u,i) = sum_c w_uc s(i,c) / sum_c w_uc; w_uc the `user_genre_weights` of genres.py
              (the night's published table, or its numpy twin on a split), s(i,c) item_genre_scores
              (gamma where missing); ranked by the log of R or of its `genre_scorer` form (the
              column `genre_r` holds R itself)
  content     cosine(user profile, item embedding); profile = time-decayed, rating-weighted mean
  cf          item-item autoencoder, closed form: DLAE (EASE^R with dropout emphasis; past
              `cf_max_items` items a sparse cosine item-kNN takes B's place); score = x_u B,
              x_u binary, or (rating / rating_max) ** `cf_rating_power` per rated item (B is then fit
              on the same weighted matrix), times, with `cf_recency_half_life` h, 0.5^(k/h) on the
              user's k-th newest distinct item (what a user did last predicts what comes next)
  popularity  log(1 + distinct users) of the item
Each is standardised per user over the catalogue (mean 0, sd 1) before blending, so a weight of 2
means "twice the pull", whatever the scorer's native scale.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from genre_lib import ab, rerank, spark_rank
from genre_lib.catalogue import Catalogue
from genre_lib.cf import ease, ease_from_gram, item_knn, rating_matrix, recency_matrix  # noqa: F401  (rec.* in tests)
from genre_lib.config import GenresConfig, RecommendConfig
from genre_lib.explain import explain
from genre_lib.pseudonym import pseudonymize
from genre_lib.user_blocks import UserBlocks
from genre_lib.topk import block_topk_many

COMPONENTS = ("genre", "content", "cf", "popularity")
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
# fitting
# --------------------------------------------------------------------------------------------
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
    knn: Optional[sp.csr_matrix] = None   # cf_items x cf_items sparse item-kNN, past cf_max_items
    cf_input: Optional[sp.csr_matrix] = None  # users x items, rating/recency-weighted x_u (None: `seen`)
    cf_rating: Optional[sp.csr_matrix] = None  # users x items, rating weights B was fit on (None: `seen`)
    user_profile: Optional[np.ndarray] = None  # users x d, unit rows (zeros when no embedded history)
    item_emb: Optional[np.ndarray] = None      # items x d, unit rows (zeros when no embedding)
    titles: Optional[np.ndarray] = None
    genre_scale: Optional[np.ndarray] = None        # genres: n_items / M_c (genre_scorer share, popularity)
    genre_item_weight: Optional[np.ndarray] = None  # items: 1 (share) or training users + 1 (popularity)
    item_users: Optional[np.ndarray] = None    # items, float64: distinct training users (all blocks)
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
    genres stage's `half_life_days` (one taste-decay knob), times rating / rating_max when rated."""
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
    published table, or genres.user_genre_weights_pandas on a split); `rating_max` is the clean
    stage's upper rating bound. The same as fit_items over one block, then fit_users."""
    df = _prepared(interactions)
    return fit_users(fit_items(lambda: iter([df]), catalogue, rc, gc, rating_max), df, user_weights, rc, gc, rating_max)


def fit_items(blocks, catalogue: Catalogue, rc: RecommendConfig, gc: GenresConfig, rating_max: float) -> Model:
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

    s, has, genres = item_genre_matrix(catalogue.item_genre_scores, item_ids, rc.gamma)
    model = Model(user_ids=np.asarray([], dtype=object), item_ids=item_ids, genres=genres,
                  seen=sp.csr_matrix((0, len(item_ids)), dtype=np.float32), user_genre=np.zeros((0, len(genres))),
                  item_genre=s, item_has_genre=has, popularity=np.log1p(users_per_item).astype(np.float32),
                  item_users=users_per_item, history_end=end if end is not None else pd.Timestamp.now(tz="UTC"))
    if rc.genre_scorer != "seed" and len(genres):
        # s(i,c) x item_weight_i / M_c, M_c = sum_j s(j,c) item_weight_j, scaled to mean ~1
        item_w = np.ones(len(item_ids)) if rc.genre_scorer == "share" else users_per_item + 1.0
        mass = (s * item_w[:, None]).sum(0)
        model.genre_scale = np.where(mass > 0, len(item_ids) / np.where(mass > 0, mass, 1.0), 0.0)
        model.genre_item_weight = item_w
    model.available = {"genre": len(genres) > 0, "cf": rows > 0, "popularity": rows > 0, "content": False}

    # cf over every item with interactions: EASE while its dense Gram inverse (O(items^3)) fits
    # cf_max_items, a sparse item-kNN beyond
    cover = np.flatnonzero(users_per_item > 0)
    if len(cover):
        model.ease_items = cover

        def cf_blocks():  # each user block's x (binary, or the rating weights B is fit on), cf items only
            for raw in blocks():
                df = _prepared(raw)
                uidx = pd.Index(df["user_id"].unique())
                x = (rating_matrix(df, uidx, iidx, rc.cf_rating_power, rating_max) if rc.cf_rating_power > 0
                     else _seen(df, uidx, iidx))
                yield x[:, cover]

        if len(cover) > rc.cf_max_items:
            with tempfile.TemporaryDirectory(prefix="genre-knn-") as tmp:  # the blocks once, read per item block
                paths = []
                for b, x in enumerate(cf_blocks()):
                    paths.append(f"{tmp}/{b}.npz")
                    sp.save_npz(paths[-1], x.tocsr(), compressed=False)
                model.knn = item_knn(lambda: (sp.load_npz(p) for p in paths), rc.cf_knn_neighbours)
        else:
            g = np.zeros((len(cover), len(cover)))
            for x in cf_blocks():
                g += (x.T @ x).toarray()
            model.ease = ease_from_gram(g, rc.cf_reg, rc.cf_dropout)

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
    if items.ease_items is not None:
        if rc.cf_rating_power > 0:
            model.cf_rating = rating_matrix(df, uidx, iidx, rc.cf_rating_power, rating_max)
        model.cf_input = cf_input_matrix(model, df, rc.cf_recency_half_life)
    if items.item_emb is not None:
        w = _content_weights(df, gc, items.history_end, rating_max)
        wm = sp.csr_matrix((w, (uidx.get_indexer(df["user_id"]), iidx.get_indexer(df["item_id"]))), shape=seen.shape)
        prof = np.asarray(wm @ items.item_emb, dtype=np.float32)
        prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
        model.user_profile = prof
    return model


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
    if rc.pseudonymize_users:
        uniq, inv = np.unique(users, return_inverse=True)
        users = pseudonymize(uniq, rc.pseudonym_key_env)[inv]
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
    """A block of user rows ranked and explained: what recommend.engine=spark runs on executors."""
    return recommendations_frame(model, recommend(model, rc.weights, rc.top_n, rc.block_users, users=users), rc, variant)


FIRST_STAGE = rerank.FirstStage(fit, recommend, genre_r)  # what the learned second stage re-ranks


def run(ctx) -> dict:
    """The stage: fit on every interaction up to the night, top N for every user, explained, each
    user's list ranked with their A/B variant's settings (genre_lib/ab.py; column `variant`, null
    without A/B); the `recommendations` partition committed; metrics for MLflow. A night past
    `recommend.user_block_rows` interactions is fit and ranked a block of users at a time
    (genre_lib/user_blocks.py): the item side once over every block, then each block's users."""
    cfg = ctx.cfg
    blocks = UserBlocks(ctx.lake, ctx.ds, cfg.genres.lookback_days, cfg.recommend.user_block_rows, "recommend")
    try:
        return _ranked(ctx, blocks)
    finally:
        blocks.remove()


def _ranked(ctx, blocks: UserBlocks) -> dict:
    cfg = ctx.cfg
    catalogue = Catalogue.from_lake(ctx.lake, ctx.ds)
    sides: dict = {}  # ab.fit_key -> item side: one per distinct set of fit-time settings

    def item_side(rc):
        key = ab.fit_key(rc)
        if key not in sides:
            sides[key] = fit_items(blocks.frames, catalogue, rc, cfg.genres, cfg.clean.rating_max)
        return sides[key]

    second, extra = None, {}  # None: the blend ranks (off, or auto found no gain on validation)
    if cfg.rerank.enabled != "off":  # trained on the first block's users (all of them on a one-block night)
        second, extra = rerank.night(blocks.frame(0), catalogue, cfg, ctx.run_date, FIRST_STAGE)
    totals = {"users": 0, "ab": {}, "used": set()}
    covered = None

    def block_arms():
        for b in range(blocks.n):
            history = blocks.frame(b)
            users = None if blocks.n == 1 else history["user_id"].astype(str).unique()
            weights = ctx.lake.read_pandas("user_genre_weights", ctx.ds, users=users)  # the night's published genre truth
            refit = lambda rc: fit_users(item_side(rc), history, weights, rc, cfg.genres, cfg.clean.rating_max)  # noqa: E731
            model = refit(cfg.recommend)
            totals["users"] += model.n_users
            arms = ab.arms(cfg, model, refit)
            for a in arms:
                if a.name is not None:
                    totals["ab"][a.name] = totals["ab"].get(a.name, 0) + len(a.rows)
            yield history, model, arms

    if cfg.recommend.engine == "spark":  # user blocks ranked on the executors, by score_users
        staged = ctx.lake.staging("recommendations", ctx.ds)
        for _, model, arms in block_arms():
            sdf, done = spark_rank.rank(ctx, [(a.name, a.model, a.rc, a.rows) for a in arms], score_users)
            try:
                ctx.lake.spark_write("recommendations", sdf, staged, mode="append")
            finally:
                done()
        man = ctx.lake.commit("recommendations", ctx.ds, staged, {"row_count": ctx.lake.count_rows(staged),
                                                                   **ctx.manifest(users=totals["users"])})
        return {"users": totals["users"], "items": len(item_side(cfg.recommend).item_ids), "rows": man["row_count"]}

    def frames():
        nonlocal covered
        for history, model, arms in block_arms():
            parts = [(a, recommend(a.model, a.rc.weights, a.rc.top_n, a.rc.block_users, users=a.rows) if second is None
                      else second.rank(a.model, history, a.rc, a.rows)) for a in arms if a.rows is None or len(a.rows)]
            if not parts:
                continue
            frame = pd.concat([recommendations_frame(a.model, t, a.rc, a.name) for a, t in parts], ignore_index=True)
            if len(parts) > 1:  # users in model order as without A/B, each list in rank order (stable sort)
                frame = frame.iloc[np.argsort(np.concatenate([t.users for _, t in parts]), kind="stable")]
            covered = np.zeros(model.n_items, bool) if covered is None else covered
            for _, t in parts:
                covered[t.items] = True
                totals["used"] |= {c for c in t.weights}
            yield frame

    man = ctx.lake.write_pandas_parts("recommendations", ctx.ds, frames(), lambda: ctx.manifest(users=totals["users"]))
    n_items = len(item_side(cfg.recommend).item_ids)
    return {"users": totals["users"], "items": n_items, "rows": man["row_count"],
            "catalogue_coverage": float(0 if covered is None else covered.sum()) / max(n_items, 1),
            **{f"scorer_{c}": float(c in totals["used"]) for c in COMPONENTS},
            **{f"ab_users_{name}": n for name, n in totals["ab"].items()}, **extra}
