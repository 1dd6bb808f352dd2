"""Per-genre decision thresholds and the scores they give, one protocol for every model alike
(classifier, TF-IDF, prior, a re-scored champion): thresholds are tuned on validation only, and
macro-F1 averages the genres that have at least one positive in the scored split (a genre absent
from a split has no defined F1).
"""
from __future__ import annotations

import numpy as np

THRESHOLD_GRID = np.concatenate([[0.01, 0.02, 0.03], np.round(np.arange(0.05, 0.96, 0.05), 2)])


def _counts(P: np.ndarray, Y: np.ndarray, thr: np.ndarray):
    pred = P >= thr
    y = Y > 0.5
    tp = (pred & y).sum(0)
    fp = (pred & ~y).sum(0)
    fn = (~pred & y).sum(0)
    return tp, fp, fn


def _f1(tp, fp, fn):
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def tune_thresholds(P: np.ndarray, Y: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per-genre threshold maximising F1 on the data given (pass validation only). Genres with no
    positive there keep 0.5."""
    tp, fp, fn = _counts(P[:, :, None], Y[:, :, None], grid[None, None, :])
    f1 = _f1(tp, fp, fn)                                   # (G, T)
    thr = grid[f1.argmax(1)].astype(np.float64)
    thr[(Y > 0.5).sum(0) == 0] = 0.5
    return thr


def scores(P: np.ndarray, Y: np.ndarray, thr: np.ndarray, with_ap: bool = True) -> dict:
    """macro-F1 (over genres present), micro-F1, per-genre F1 and average precision."""
    from sklearn.metrics import average_precision_score

    tp, fp, fn = _counts(P, Y, thr)
    f1 = _f1(tp, fp, fn)
    present = (Y > 0.5).sum(0) > 0
    ap = np.full(Y.shape[1], np.nan)
    for j in np.flatnonzero(present) if with_ap else []:
        ap[j] = average_precision_score(Y[:, j], P[:, j])
    micro = float(_f1(tp.sum(), fp.sum(), fn.sum()))
    return {"macro_f1": float(f1[present].mean()) if present.any() else 0.0, "micro_f1": micro,
            "macro_ap": float(np.nanmean(ap)) if with_ap and present.any() else float("nan"),
            "f1": np.where(present, f1, np.nan), "ap": ap}


def tuned_macro_f1(P: np.ndarray, Y: np.ndarray) -> float:
    return scores(P, Y, tune_thresholds(P, Y), with_ap=False)["macro_f1"]
