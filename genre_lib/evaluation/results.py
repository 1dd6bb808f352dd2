"""The evaluation's results in MLflow: metrics per model, a bar chart per metric, the markdown and
HTML reports, and the payload (metrics.json)."""
from __future__ import annotations

import math

import numpy as np

from genre_lib.evaluation import ab_eval
from genre_lib.evaluation.html_report import log_report
from genre_lib.protocol.metrics import METRICS


def markdown_report(payload: dict) -> str:
    k = payload["k"]
    cols = [f"{m}@{k}" for m in METRICS]
    lines = [f"# Evaluation ({payload['protocol']}, k={k}, primary: {payload['primary']})", "",
             f"train rows {payload['train_rows']}, test rows {payload['test_rows']}", "",
             *([f"cold items: each value the mean over {payload['cold_folds']['n']} item folds (per fold and "
                "standard deviations in metrics.json)", ""] if "cold_folds" in payload else []),
             "| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in payload["models"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in cols) + " |")
    return "\n".join(lines) + "\n" + ab_eval.markdown(payload.get("variants_ab"), k)


def log_to_mlflow(payload: dict) -> dict:
    """Metrics per model (`<model>.<metric>`), a bar chart per metric, the report and the payload."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    k = payload["k"]
    flat = {}
    for name, m in payload["models"].items():
        for key, v in m.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                flat[f"{name}.{key}".replace("@", "_at_")] = float(v)
    flat.update(ab_eval.mlflow_metrics(payload.get("variants_ab")))  # ab.<variant>.*, ab.diff.*
    mlflow.log_metrics(flat)
    names = list(payload["models"])
    for metric in METRICS:
        key = f"{metric}@{k}"
        vals = [payload["models"][n].get(key, np.nan) for n in names]
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(names) + 2), 3))
        ax.bar(names, vals, color=["C1" if n == payload["primary"] else "C0" for n in names])
        ax.set_title(key)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        fig.tight_layout()
        mlflow.log_figure(fig, f"charts/{metric}_at_{k}.png")
        plt.close(fig)
    mlflow.log_text(markdown_report(payload), "report.md")
    mlflow.log_dict(payload, "metrics.json")
    log_report(payload)  # report.html; metric keys the same every night
    p = payload["models"][payload["primary"]]
    return {f"primary_{key}".replace("@", "_at_"): v for key, v in p.items() if isinstance(v, (int, float))}
