"""One experiment of the genre classifier: split the labelled items, train (classifier/training.py),
tune thresholds on validation, score the model and the baselines on test; and the night's inputs
from the lake, for the stage and for the cold-item evaluation."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd
from torch import nn

from genre_lib.classifier import genre_data
from genre_lib.classifier.genre_data import GenreData, split_items
from genre_lib.classifier.model import predict_proba
from genre_lib.classifier.thresholds import scores, tune_thresholds
from genre_lib.classifier.training import FinetuneSetup, prior_baseline, tfidf_baseline, train_finetune, train_head
from genre_lib.config.settings import ClassifierConfig


# --- one experiment --------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: nn.Module               # GenreClassifier, or FinetunedClassifier when fine-tuned
    genres: list[str]
    thresholds: np.ndarray
    split: np.ndarray              # over the labelled items of the GenreData, in order
    history: list[dict]
    metrics: dict                  # flat, ready for MLflow
    per_genre: pd.DataFrame
    probs: dict = field(default_factory=dict)   # model -> probabilities over the labelled items
    inputs: Optional[np.ndarray] = None         # the model's input rows for every item of the data
    features: str = ""                          # the model's input layout (GenreData.features or finetuned:N:id)


def run_experiment(data: GenreData, cfg: ClassifierConfig,
                   on_epoch: Optional[Callable[[dict], None]] = None,
                   finetune: Optional[FinetuneSetup] = None) -> TrainResult:
    """Split, train, tune thresholds on validation, score classifier and baselines on test.
    With `finetune`, the model is the encoder's top layers + head trained on the items' texts
    (the word branch is not used); split, thresholds, baselines and metrics are the same."""
    lab = data.labelled
    X, Y, texts = data.X[lab], data.Y[lab], data.texts[lab]
    split = split_items(data.item_ids[lab], cfg.val_share, cfg.test_share, cfg.seed)
    tr, va, te = (split == s for s in ("train", "val", "test"))
    if tr.sum() < 2 or va.sum() < 1 or te.sum() < 1:
        raise ValueError(f"too few labelled items to train and evaluate: {int(lab.sum())} "
                         f"(train {int(tr.sum())}, val {int(va.sum())}, test {int(te.sum())})")

    if finetune is not None:
        inputs = finetune.inputs(data)
        T = inputs[lab]
        m, h = train_finetune(finetune, T[tr], Y[tr], T[va], Y[va], cfg, on_epoch)
        candidates, use_words, features = {"finetuned": (m, h, max(r["val_macro_f1"] for r in h))}, False, finetune.features
        model, history = m, h
        probs = {"classifier": predict_proba(model, T)}
    else:
        # Head only, and head + word branch when the data carries words: the one with the better
        # validation macro-F1 is the model (a choice made on validation, like early stopping).
        variants = []
        if data.max_words and cfg.word_branch in ("auto", "on"):
            variants.append(True)
        if not variants or cfg.word_branch == "auto":
            variants.append(False)
        candidates = {}
        for use_words in variants:
            # per-epoch logging follows the first variant trained; the kept model's history is returned
            m, h = train_head(X[tr], Y[tr], X[va], Y[va], cfg, on_epoch if not candidates else None,
                              data.word_dim, data.max_words, use_words)
            candidates[use_words] = (m, h, max(r["val_macro_f1"] for r in h))
        use_words = max(candidates, key=lambda k: (candidates[k][2], k))
        model, history, _ = candidates[use_words]
        inputs, features = data.X, data.features
        probs = {"classifier": predict_proba(model, X)}
    probs["tfidf"], tfidf_info = tfidf_baseline(texts, Y, split)
    probs["prior"] = prior_baseline(Y, split)

    metrics: dict = {"n_items": len(data.item_ids), "n_labelled": int(lab.sum()), "n_genres": len(data.genres),
                     "n_train": int(tr.sum()), "n_val": int(va.sum()), "n_test": int(te.sum()),
                     "best_epoch": max(history, key=lambda r: r["val_macro_f1"])["epoch"],
                     "epochs_run": len(history), "word_branch": float(use_words),
                     "finetune_layers": float(finetune.n_layers if finetune else 0), **tfidf_info}
    for k, (_m, _h, f1) in candidates.items():
        metrics[f"val_macro_f1_{k if isinstance(k, str) else ('with_words' if k else 'head_only')}"] = f1
    per_genre = pd.DataFrame({"genre": data.genres, "train_positives": Y[tr].sum(0).astype(int),
                              "test_positives": Y[te].sum(0).astype(int)})
    thresholds = None
    for name, P in probs.items():
        thr = tune_thresholds(P[va], Y[va])  # validation only
        val, test = scores(P[va], Y[va], thr), scores(P[te], Y[te], thr)
        prefix = "" if name == "classifier" else f"{name}_"
        metrics.update({f"{prefix}val_macro_f1": val["macro_f1"], f"{prefix}test_macro_f1": test["macro_f1"],
                        f"{prefix}test_micro_f1": test["micro_f1"], f"{prefix}test_macro_ap": test["macro_ap"]})
        per_genre[f"{name}_f1"] = test["f1"]
        per_genre[f"{name}_ap"] = test["ap"]
        if name == "classifier":
            thresholds = thr
            per_genre["threshold"] = thr
            per_genre["test_predicted_positives"] = (P[te] >= thr).sum(0)
    metrics["gain_over_tfidf"] = metrics["test_macro_f1"] - metrics["tfidf_test_macro_f1"]
    metrics["gain_over_prior"] = metrics["test_macro_f1"] - metrics["prior_test_macro_f1"]
    for row in per_genre.itertuples():
        key = metric_key(row.genre)
        if not np.isnan(row.classifier_f1):
            metrics[f"test_f1.{key}"] = float(row.classifier_f1)
            metrics[f"test_ap.{key}"] = float(row.classifier_ap)
    return TrainResult(model, data.genres, thresholds, split, history, metrics, per_genre, probs, inputs, features)


def metric_key(genre: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and space (\"Children's\" -> Children_s)."""
    return re.sub(r"[^\w\-./ ]", "_", genre)


# --- the stage ------------------------------------------------------------------------------------
def night_data(ctx, hidden: frozenset = frozenset(), words: bool = True) -> tuple[GenreData, Optional[str]]:
    """The night's classifier inputs (items_clean + item_embeddings, genres in the vocabulary's order,
    each content word embedded once when `words` and the word branch is on) and the vocabulary's ds;
    `hidden` items lose their genre labels (cold-item evaluation)."""
    items = ctx.lake.read_pandas("items_clean", ctx.ds)
    if hidden:
        items["genres"] = [[] if i in hidden else g for i, g in zip(items["item_id"], items["genres"])]
    vocab_ds = ctx.lake.latest("genre_vocab", ctx.ds)
    genres = genre_data.genre_order(ctx.lake.read_pandas("genre_vocab", vocab_ds) if vocab_ds else None, items)
    cfg, encode_words = ctx.cfg.classifier, None
    if words and cfg.word_branch != "off":
        from genre_lib.classifier.encoder import TextEncoder
        encode_words = TextEncoder.from_config(ctx.cfg.encoder, progress_every_s=0).encode
    embeddings = ctx.lake.read_pandas("item_embeddings", ctx.ds)
    return genre_data.build_data(items, embeddings, genres, encode_words, cfg.max_words, ctx.cfg.encoder.model), vocab_ds
