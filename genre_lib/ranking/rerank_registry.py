"""The re-ranker's trees in MLflow: each trained night logs them to its run and registers a version of
`genre-reranker` tagged with its config fingerprint, the night and the auto decision; a night with
rerank.retrain_days = N > 1 reuses the newest version of the same fingerprint trained on one of the
N nights up to it, instead of training (never a version of a later night: a backfill must not see
the future)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Optional

import numpy as np
import pandas as pd

from genre_lib.ranking.rerank_features import FEATURES

NAME = "genre-reranker"
log = logging.getLogger("genre.rerank")


def fingerprint(cfg) -> str:
    """What shapes the trees: every setting but the retrain cadence, the features, LightGBM's version."""
    import lightgbm

    settings = cfg.to_dict()
    settings["rerank"].pop("retrain_days", None)
    blob = json.dumps({"config": settings, "features": FEATURES, "lightgbm": lightgbm.__version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def reusable(cfg, run_date) -> Optional[tuple]:
    """(booster, decision, model version) of the newest version to reuse tonight, or None: train."""
    import mlflow

    n = cfg.rerank.retrain_days
    if n <= 1 or run_date is None or mlflow.active_run() is None:
        return None
    night = dt.date.fromisoformat(str(run_date))
    first, last = str(night - dt.timedelta(days=n - 1)), str(night)
    versions = mlflow.MlflowClient().search_model_versions(f"name='{NAME}' and tags.fingerprint='{fingerprint(cfg)}'")
    import mlflow.lightgbm

    for v in sorted((v for v in versions if first <= v.tags.get("trained_ds", "") <= last),
                    key=lambda v: (v.tags["trained_ds"], int(v.version)), reverse=True):
        try:
            return mlflow.lightgbm.load_model(f"models:/{NAME}/{v.version}"), json.loads(v.tags["decision"]), v
        except Exception as e:  # noqa: BLE001 - artifacts gone or unreadable: an older version, else train
            log.warning("%s v%s (trained for %s) cannot be loaded, not reused: %s", NAME, v.version,
                        v.tags["trained_ds"], e)
    return None


def note_reuse(decision: dict, version) -> None:
    """Tags of the active run: which trees ranked tonight, and the decision they were kept by."""
    import mlflow

    trees = f"{NAME} v{version.version}, trained for {version.tags['trained_ds']}"
    mlflow.set_tags({"rerank_trees": trees, "rerank_decision": f"{decision['reason']} (reused: {trees})"})


def register(rr, sample: pd.DataFrame, cfg, run_date) -> None:
    """Into the active run (none: nothing): the trees' params and decision, a feature importance
    plot, and the model with its signature (features in, score out), registered as a version of
    NAME with the tags `reusable` reads."""
    import mlflow
    if mlflow.active_run() is None:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    d = rr.decision
    mlflow.log_params({"rerank_model.best_iteration": d["best_iteration"], "rerank_model.features": len(rr.names),
                       "rerank_model.train_users": d["train_users"], "rerank_model.kept": d["kept"]})
    mlflow.set_tag("rerank_decision", d["reason"])
    mlflow.log_dict(d, "rerank/decision.json")
    gain = rr.booster.feature_importance("gain")
    order = np.argsort(gain)
    fig, ax = plt.subplots(figsize=(6, 0.22 * len(order) + 1))
    ax.barh(np.asarray(rr.names)[order], gain[order])
    ax.set_title("re-ranker feature importance (gain)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    mlflow.log_figure(fig, "rerank/feature_importance.png")
    plt.close(fig)
    x = sample[rr.names]
    # requirements given, not inferred: inference runs a subprocess that costs 3-4 s a night
    info = mlflow.lightgbm.log_model(rr.booster, name="reranker", signature=infer_signature(x, rr.predict(x)),
                                     registered_model_name=NAME,
                                     pip_requirements=mlflow.lightgbm.get_default_pip_requirements())
    client = mlflow.MlflowClient()
    tags = {"fingerprint": fingerprint(cfg), "trained_ds": "" if run_date is None else str(run_date),
            "kept": str(d["kept"]), "decision": json.dumps(d)}
    for k, v in tags.items():
        client.set_model_version_tag(NAME, str(info.registered_model_version), k, v)
