"""The cold_items protocol's parts outside one split: the classifier rescored without the cold items'
labels, and the item folds. eval.cold_folds = N > 1 evaluates N disjoint item folds in turn (the
folds are splits.cold_items', each with a classifier that never saw that fold's labels);
metrics.json's models are then the folds' means. One fold is
one draw of the catalogue, and which items a draw holds moves the scores far more than the scorers
differ: on ML-100k, four draws of a fifth of the items gave genre nDCG@10 0.10-0.16 and content
0.08-0.20, each scorer beating the other on some draws."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd


def rescore_hiding_labels(ctx, hidden: set) -> pd.DataFrame:
    """item_genre_scores from a classifier trained as the night's train stage does, but with the
    `hidden` items' genre labels removed: their scores are the model's predictions."""
    from genre_lib.classifier.experiment import night_data, run_experiment
    from genre_lib.classifier.genre_data import score_items
    from genre_lib.classifier.model import predict_proba

    data, _ = night_data(ctx, frozenset(hidden))
    result = run_experiment(data, ctx.cfg.classifier)
    return score_items(data, predict_proba(result.model, result.inputs))


def over_folds(evaluate_fold: Callable[[int], dict], n: int) -> dict:
    """The metrics.json payload of `evaluate_fold(f)` (evaluate_blocks with cold_fold=f) over folds
    f < n. n = 1: fold 0's payload as it is. Else fold 0's payload (its variants and A/B comparison)
    with each model's metrics the mean over the folds, train_rows, test_rows and cold_items summed
    over the folds, and `cold_folds`: {"n", "std": model -> metric -> standard deviation over the
    folds (ddof 1), "per_fold": [{"cold_items", "train_rows", "test_rows", "models"}]}."""
    payloads = [evaluate_fold(f) for f in range(n)]
    if n == 1:
        return payloads[0]
    out = dict(payloads[0])
    models, std = {}, {}
    for name, first in payloads[0]["models"].items():
        values = {key: np.array([p["models"][name][key] for p in payloads], float) for key in first}
        models[name] = {key: float(v.mean()) for key, v in values.items()}
        std[name] = {key: float(v.std(ddof=1)) for key, v in values.items()}
    out["models"] = models
    for key in ("train_rows", "test_rows", "cold_items"):
        out[key] = int(sum(p[key] for p in payloads))
    out["cold_folds"] = {"n": n, "std": std, "per_fold": [
        {key: p[key] for key in ("cold_items", "train_rows", "test_rows", "models")} for p in payloads]}
    return out
