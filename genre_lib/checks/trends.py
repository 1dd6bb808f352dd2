"""A night beside the nights before it: the figures a person follows over time, read from the lake's
own records (evaluation metrics.json, input_checks, output_checks, publish_log), as a table, as
inline SVG line charts for the evaluation's report.html, and as MLflow metrics of one long-lived
`trends` run per lake with the night as step (YYYYMMDD) and as timestamp, so MLflow's charts draw
them over the nights."""
from __future__ import annotations

import datetime as dt
import html
import math
from typing import Optional

import pandas as pd

from genre_lib.lake.storage import Lake

TREND_NIGHTS = 30  # nights the report draws
COLORS = ["#e8871e", "#4a7fb5", "#5aa469", "#b5544a", "#8a6bb5", "#777777", "#c7a400", "#3fa7a7"]


def night_figures(lake: Lake, ds: str, payload: Optional[dict] = None, metric: str = "ndcg@10",
                  published: bool = True) -> dict:
    """The figures of night `ds` ({} parts where a record is missing); `payload`: tonight's evaluation
    when it is not committed yet (the evaluate stage writing its report, which does not read
    publish_log: `published` False, as publish comes after it)."""
    out: dict[str, float] = {}
    if payload is None and ds in lake.committed("evaluation"):
        payload = lake.read_json("evaluation", ds, "metrics.json")
    if payload:
        for model, m in (payload.get("models") or {}).items():
            if isinstance(m.get(metric), (int, float)) and math.isfinite(m[metric]):
                out[f"eval.{model}.{metric.replace('@', '_at_')}"] = float(m[metric])
    failed = {"blocking": 0, "warning": 0}
    for table, scope in (("input_checks", "inputs"), ("output_checks", "outputs")):
        if ds not in lake.committed(table):
            continue
        for r in lake.read_pandas(table, ds).itertuples():
            out[f"{scope}.{r.check}"] = float(r.value)
            if not r.passed:
                failed[r.severity] = failed.get(r.severity, 0) + 1
        out["checks.failed_blocking"], out["checks.failed_warning"] = failed["blocking"], failed["warning"]
    if published and ds in lake.committed("publish_log"):
        out["published"] = float(lake.read_json("publish_log", ds, "decision.json")["result"].get("published", 0))
    return out


def history(lake: Lake, ds: str, nights: int = TREND_NIGHTS, tonight: Optional[dict] = None,
            metric: str = "ndcg@10") -> pd.DataFrame:
    """One row per night (index: the night) of the last `nights` nights up to `ds` that have records."""
    days = sorted({d for t in ("evaluation", "input_checks", "output_checks") for d in lake.committed(t)
                   if d <= ds} | {ds})[-nights:]
    rows = {d: night_figures(lake, d, tonight if d == ds else None, metric, published=False) for d in days}
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def line_chart(title: str, frame: pd.DataFrame, columns: list[str], width: int = 440, height: int = 170) -> str:
    """Lines over the nights as inline SVG: one per column, the last night marked, min and max labelled."""
    cols = [c for c in columns if c in frame and frame[c].notna().any()]
    if not cols:
        return ""
    left, right, top, bottom = 48, 10, 24, 30
    vals = frame[cols].astype(float)
    lo, hi = float(vals.min().min()), float(vals.max().max())
    hi = hi if hi > lo else lo + (abs(lo) or 1.0)
    n = len(frame)
    x = lambda i: left + (width - left - right) * (i / (n - 1) if n > 1 else 0.5)  # noqa: E731
    y = lambda v: top + (height - top - bottom) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    parts = [f'<text x="4" y="14" font-size="12" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="10">{hi:.4g}</text>',
             f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end" font-size="10">{lo:.4g}</text>',
             f'<text x="{left}" y="{height - 8}" font-size="10">{html.escape(str(frame.index[0]))}</text>',
             f'<text x="{width - right}" y="{height - 8}" text-anchor="end" font-size="10">'
             f'{html.escape(str(frame.index[-1]))}</text>']
    for k, c in enumerate(cols):
        color = COLORS[k % len(COLORS)]
        pts = [(x(i), y(v)) for i, v in enumerate(vals[c]) if math.isfinite(v)]
        if len(pts) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="'
                         + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        if math.isfinite(vals[c].iloc[-1]):
            parts.append(f'<circle cx="{x(n - 1):.1f}" cy="{y(vals[c].iloc[-1]):.1f}" r="3" fill="{color}"/>')
        parts.append(f'<text x="{left + 4 + 130 * (k % 3)}" y="{top + 12 + 12 * (k // 3)}" font-size="10" '
                     f'fill="{color}">{html.escape(c.split(".", 1)[-1])}</text>')
    return (f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">'
            + "".join(parts) + "</svg>")


def report_section(lake: Lake, ds: str, payload: dict, metric: str = "ndcg@10") -> str:
    """report.html's "Tonight beside the nights before" section."""
    frame = history(lake, ds, tonight=payload, metric=metric)
    key = metric.replace("@", "_at_")
    models = [c for c in frame if c.startswith("eval.") and c.endswith(key)]
    primary = f"eval.{payload.get('primary')}.{key}"
    models = [primary, *sorted(m for m in models if m != primary)] if primary in models else models
    charts = [line_chart(f"{metric}: {payload.get('primary')} and its ablations", frame, models),
              line_chart("input volume (clean rows)", frame, ["inputs.volume"]),
              line_chart("quarantine share", frame, ["inputs.quarantine_share"]),
              line_chart("failed checks", frame, ["checks.failed_blocking", "checks.failed_warning"]),
              line_chart("genre-mix drift (PSI against the trailing nights)", frame, ["outputs.genre_mix_drift"])]
    shown = [c for c in charts if c]
    if len(frame) < 2 or not shown:
        return "<h2>Tonight beside the nights before</h2><p class='note'>no earlier nights in this lake yet</p>"
    return (f"<h2>Tonight beside the nights before</h2><p class='note' id='trends'>{len(frame)} nights, "
            f"{html.escape(str(frame.index[0]))} .. {html.escape(str(frame.index[-1]))} (tonight marked)</p>"
            f"<div class='charts'>{''.join(shown)}</div>")


def log_night(client, experiment_id: str, lake: Lake, ds: str, metric: str = "ndcg@10") -> Optional[str]:
    """Tonight's figures as metrics of the lake's trends run (created on first use), step YYYYMMDD."""
    from mlflow.entities import Metric

    figures = night_figures(lake, ds, metric=metric)
    if not figures:
        return None
    found = client.search_runs([experiment_id], filter_string=f"tags.stage = 'trends' and tags.lake_root = '{lake.root}'",
                               max_results=1)
    run_id = found[0].info.run_id if found else client.create_run(
        experiment_id, run_name=f"trends {lake.root}", tags={"stage": "trends", "lake_root": lake.root}).info.run_id
    day = dt.date.fromisoformat(ds)
    stamp = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    step = day.year * 10_000 + day.month * 100 + day.day
    client.log_batch(run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in sorted(figures.items())
                                      if math.isfinite(float(v))])
    client.set_terminated(run_id, "FINISHED")
    return run_id
