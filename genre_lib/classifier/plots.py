"""The classifier's plots for MLflow: loss and F1 curves, per-genre F1 bars, predicted vs true
genre frequency."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd


def plot_all(result, out_dir, unlabelled_probs: Optional[np.ndarray] = None) -> list[str]:
    """PNG files of a `training.TrainResult` in `out_dir`; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h = pd.DataFrame(result.history)
    paths = []

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(h.epoch, h.train_loss, label="train"); a.plot(h.epoch, h.val_loss, label="validation")
    a.set(title="BCE loss (pos-weighted)", xlabel="epoch"); a.legend()
    b.plot(h.epoch, h.train_macro_f1, label="train"); b.plot(h.epoch, h.val_macro_f1, label="validation")
    b.axvline(result.metrics["best_epoch"], color="grey", ls=":", label="kept epoch")
    b.set(title="macro-F1 (validation-tuned thresholds)", xlabel="epoch"); b.legend()
    paths.append(_save(fig, out / "curves.png"))

    pg = result.per_genre
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(pg) + 1.5))
    y = np.arange(len(pg))
    for k, (name, color) in enumerate([("classifier", "C0"), ("tfidf", "C1"), ("prior", "C7")]):
        ax.barh(y + (k - 1) * 0.27, pg[f"{name}_f1"].fillna(0), height=0.27, label=name, color=color)
    ax.set_yticks(y, pg.genre); ax.invert_yaxis()
    ax.set(title="test F1 per genre", xlabel="F1"); ax.legend()
    paths.append(_save(fig, out / "per_genre_f1.png"))

    te = result.split == "test"
    n_test = max(int(te.sum()), 1)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(pg) + 1.5))
    ax.barh(y - 0.2, pg.test_positives / n_test, height=0.4, label="true (test)")
    ax.barh(y + 0.2, pg.test_predicted_positives / n_test, height=0.4, label="predicted (test)")
    if unlabelled_probs is not None and len(unlabelled_probs):
        ax.scatter((unlabelled_probs >= result.thresholds).mean(0), y, color="k", marker="|", s=80,
                   label="predicted (unlabelled items)", zorder=3)
    ax.set_yticks(y, pg.genre); ax.invert_yaxis()
    ax.set(title="genre frequency: predicted vs true", xlabel="share of items"); ax.legend()
    paths.append(_save(fig, out / "genre_frequency.png"))
    return paths


def _save(fig, path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return str(path)
