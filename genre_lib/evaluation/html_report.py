"""The evaluation's HTML report, an artifact (`report.html`) of the evaluate stage's MLflow run: the
metric table of every model, a bar chart per metric across the models, the genre mix of tonight's
recommendations against the catalogue's, coverage/novelty/diversity side by side, and tonight beside
the nights before (checks/trends.py: the metric and its ablations, input volume, quarantine share,
check failures, genre-mix drift).

Self-contained (inline CSS and SVG, no scripts), so MLflow's artifact viewer shows it as is. The
metric keys it fills in are the ones `evaluate.log_to_mlflow` uses: `<model>.<metric>_at_<k>`.
"""
from __future__ import annotations

import html
import math
from typing import Optional

import pandas as pd

from genre_lib.checks import figures
from genre_lib.protocol.metrics import METRICS

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
tr.primary td{background:#fff4e0}td.best{font-weight:bold}.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{border:1px solid #eee;padding:6px}h2{margin-top:28px}.note{color:#666;font-size:90%}"""


def _num(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def bar_chart(title: str, labels: list[str], values: list, highlight: Optional[str] = None, width: int = 320) -> str:
    """A horizontal bar chart as inline SVG (non-finite values drawn as n/a)."""
    row, left, right = 18, 110, 60
    top = max((v for v in values if _finite(v)), default=0.0) or 1.0
    bars = []
    for i, (label, v) in enumerate(zip(labels, values)):
        y = 22 + i * row
        w = (width - left - right) * (v / top if _finite(v) and v > 0 else 0)
        color = "#e8871e" if label == highlight else "#4a7fb5"
        bars.append(f'<text x="{left - 4}" y="{y + 12}" text-anchor="end" font-size="11">{html.escape(label)}</text>'
                    f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="{color}"/>'
                    f'<text x="{left + w + 3:.1f}" y="{y + 12}" font-size="10">{_num(v)}</text>')
    height = 28 + row * len(labels)
    return (f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">'
            f'<text x="4" y="14" font-size="12" font-weight="bold">{html.escape(title)}</text>{"".join(bars)}</svg>')


def genre_mix(recs: pd.DataFrame, item_genres: pd.DataFrame) -> pd.DataFrame:
    """Share of recommendation slots per genre, by the classifier's scores (checks.figures.genre_mix),
    against the share of catalogue items per genre; sorted by the recommendations' share."""
    scores = item_genres[["item_id", "genre", "score"]].rename(columns={"score": "weight"})
    out = pd.DataFrame({"recommendations": figures.genre_mix(recs["item_id"], scores),
                        "catalogue": figures.genre_mix(scores["item_id"].drop_duplicates(), scores)}).fillna(0.0)
    return out.sort_values("recommendations", ascending=False).rename_axis("genre").reset_index()


def render(payload: dict, recs: Optional[pd.DataFrame] = None, item_genres: Optional[pd.DataFrame] = None,
           title: str = "Evaluation", trends: str = "") -> str:
    k, primary, models = payload["k"], payload["primary"], payload["models"]
    names = list(models)
    cols = [f"{m}@{k}" for m in METRICS]
    best = {c: max((models[n].get(c) for n in names if _finite(models[n].get(c))), default=None) for c in cols}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for n in names:
        cells = "".join(f'<td class="{"best" if best[c] is not None and models[n].get(c) == best[c] else ""}">'
                        f'{_num(models[n].get(c))}</td>' for c in cols)
        rows.append(f'<tr class="{"primary" if n == primary else ""}"><td>{html.escape(n)}</td>{cells}</tr>')
    charts = "".join(bar_chart(c, names, [models[n].get(c) for n in names], primary) for c in cols)
    beyond = [f"coverage@{k}", f"novelty@{k}", f"diversity@{k}"]
    bt = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{_num(models[n].get(c))}</td>" for c in beyond)
                 + "</tr>" for n in names)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>protocol <b>{html.escape(str(payload['protocol']))}</b>, k = {k}, primary model <b>"
             f"{html.escape(primary)}</b>; train rows {payload['train_rows']}, test rows {payload['test_rows']}.</p>",
             f"<h2>Metrics per model</h2><table id='metrics'><tr><th>model</th>{head}</tr>{''.join(rows)}</table>",
             f"<h2>Per-model bar charts</h2><div class='charts'>{charts}</div>",
             "<h2>Coverage, novelty, diversity</h2><table id='beyond'><tr><th>model</th>"
             + "".join(f"<th>{c}</th>" for c in beyond) + f"</tr>{bt}</table>"]
    parts.append(_recommendations_section(recs, item_genres))
    parts.append(trends)
    parts.append("</body></html>")
    return "\n".join(parts)


def _recommendations_section(recs: Optional[pd.DataFrame], item_genres: Optional[pd.DataFrame]) -> str:
    if recs is None:
        return "<h2>Tonight's recommendations</h2><p class='note'>recommendations table not available</p>"
    per_user = recs.groupby("user_id").size()
    lo, hi = (int(per_user.min()), int(per_user.max())) if len(per_user) else (0, 0)
    out = ["<h2>Tonight's recommendations</h2>",
           f"<p id='recs'>{len(recs)} rows for {len(per_user)} users; rows per user: min {lo}, max {hi}.</p>"]
    if item_genres is None or item_genres.empty:
        return "".join(out) + "<p class='note'>no item genres: genre mix not available</p>"
    mix = genre_mix(recs, item_genres)
    rows = "".join(f"<tr><td>{html.escape(r.genre)}</td><td>{r.recommendations:.3f}</td><td>{r.catalogue:.3f}</td>"
                   f"<td>{r.recommendations - r.catalogue:+.3f}</td></tr>" for r in mix.itertuples())
    chart = bar_chart("share of recommendation slots", list(mix["genre"]), list(mix["recommendations"]), width=420)
    out += ["<h3>Genre mix</h3><table id='genre-mix'><tr><th>genre</th><th>recommendations</th><th>catalogue</th>"
            f"<th>difference</th></tr>{rows}</table>", chart]
    return "".join(out)


def metric_keys(payload: dict) -> dict[str, float]:
    """Every `<model>.<metric>_at_<k>` key of the payload's models, NaN where a value is missing or
    not finite: log_to_mlflow drops those, and a key must not come and go between nights."""
    k = payload["k"]
    return {f"{n}.{m}_at_{k}": float(v) if _finite(v := payload["models"][n].get(f"{m}@{k}")) else float("nan")
            for n in payload["models"] for m in METRICS}


def log_report(payload: dict) -> None:
    """Called by evaluate.log_to_mlflow inside the stage's MLflow run: logs report.html (with the
    recommendations section when run as a job, which knows the night's lake) and the metric keys
    evaluate left out."""
    import mlflow

    from genre_lib.checks.trends import report_section
    from genre_lib.orchestration.jobrun import current

    recs = item_genres = None
    title, trends = "Evaluation", ""
    ctx = current()
    if ctx is not None:
        title = f"Evaluation {ctx.ds} ({ctx.run_id})"
        trends = report_section(ctx.lake, ctx.ds, payload, f"ndcg@{payload['k']}")
        if ctx.ds in ctx.lake.committed("recommendations"):
            recs = ctx.lake.read_pandas("recommendations", ctx.ds, ["user_id", "item_id", "rank"])
        genres_ds = ctx.lake.latest("item_genres", ctx.ds)
        if genres_ds:
            item_genres = ctx.lake.read_pandas("item_genres", genres_ds)
    mlflow.log_text(render(payload, recs, item_genres, title, trends), "report.html")
    logged = mlflow.get_run(mlflow.active_run().info.run_id).data.metrics
    missing = {key: v for key, v in metric_keys(payload).items() if key not in logged}
    if missing:
        mlflow.log_metrics(missing)
