"""What both check stages share: a check's result row, the trailing nights a figure is compared with
(the stage's own earlier records), the band rule, the genre mix and its drift figure, and the rows a
stage commits.

The row-level rules (types, nulls, allowed values, ranges) are pandera schemas (inputs.py, outputs.py):
pandera validates pandas frames in-process, needs no server, data context or SQL engine, keeps each
schema as Python beside the code that reads the table, and with `lazy=True` reports every failing
rule with its failure cases at once. The figures compared with earlier nights (volume, coverage, the
genre mix) are plain numbers with bounds; they are computed here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from statistics import median
from typing import Optional

import numpy as np
import pandas as pd

from genre_lib.lake.storage import Lake

COLUMNS = ["night", "check", "scope", "value", "lower", "upper", "passed", "severity", "message", "detail"]


@dataclass(frozen=True)
class Result:
    check: str
    value: float
    passed: bool
    message: str
    lower: Optional[float] = None
    upper: Optional[float] = None
    detail: dict = field(default_factory=dict)  # what a later night compares with (the genre mix)


def trailing(lake: Lake, table: str, ds: str, nights: int) -> pd.DataFrame:
    """The check records of the `nights` committed nights before `ds` (a check table's own)."""
    before = [d for d in lake.committed(table) if d < str(ds)][-nights:]
    frames = [lake.read_pandas(table, d) for d in before]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def passed(past: pd.DataFrame, check: str) -> pd.Series:
    """The trailing records of `check` that passed: what a later night is compared with."""
    return (past["check"] == check) & past["passed"].astype(bool)


def in_band(check: str, value: float, past: pd.DataFrame, cfg_checks, what: str,
            band: Optional[tuple[float, float]] = None) -> Result:
    """`value` against the median of the same check's trailing values times `band` (checks.band).
    Only nights that passed this check make the band: a run of refused nights (a missing day, a
    tenth of the volume) must not become the normal a healthy night is then refused against. A lasting
    change of level fails until fewer than checks.min_trailing of the trailing nights passed (6 nights
    with the defaults); then it is not compared for a night or two, and after that it is the normal."""
    band = band or cfg_checks.band
    values = [float(v) for v in past.loc[passed(past, check), "value"] if v is not None and math.isfinite(v)]
    if len(values) < cfg_checks.min_trailing:
        return Result(check, value, True, f"{what} {value:.0f}; {len(values)} trailing nights, fewer than "
                      f"checks.min_trailing {cfg_checks.min_trailing}: not compared")
    mid = median(values)
    lo, hi = band[0] * mid, band[1] * mid
    ok = lo <= value <= hi
    ratio = value / mid if mid else float("inf")
    return Result(check, value, ok, f"{what} {value:.0f} is {ratio:.2f}x the median {mid:.0f} of {len(values)} "
                  f"trailing nights that passed (band {band[0]:g}..{band[1]:g}x: "
                  f"{'inside' if ok else 'outside'})", lo, hi)


def at_most(check: str, value: float, limit: float, what: str) -> Result:
    ok = value <= limit
    return Result(check, value, ok, f"{what} {value:.4g} {'<=' if ok else '>'} {limit:g}", None, limit)


def at_least(check: str, value: float, limit: float, what: str) -> Result:
    ok = value >= limit
    return Result(check, value, ok, f"{what} {value:.4g} {'>=' if ok else '<'} {limit:g}", limit, None)


def psi(now: dict[str, float], before: dict[str, float], eps: float = 1e-4) -> float:
    """Population stability index of two distributions over the same keys (missing keys count as eps):
    sum over keys of (p - q) * ln(p / q)."""
    keys = sorted(set(now) | set(before))
    p = np.array([max(now.get(k, 0.0), eps) for k in keys])
    q = np.array([max(before.get(k, 0.0), eps) for k in keys])
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def genre_mix(item_ids: pd.Series, genres: pd.DataFrame) -> pd.Series:
    """Share of each genre among slots, one slot per entry of `item_ids` (a recommendation, or a
    catalogue item), each split over its item's genres by weight. `genres` (item_id, genre, weight) is
    the caller's source: the catalogue's labels for the drift check, which must not move when the
    classifier does; the classifier's scores for the report, which shows what the ranker saw. A slot
    whose item has no genre counts to "(none)". Indexed by genre, sorted."""
    w = genres[["item_id", "genre", "weight"]].astype({"item_id": str})
    w = w[w["weight"] > 0]
    w = w.assign(weight=w["weight"] / w.groupby("item_id")["weight"].transform("sum"))
    slots = pd.DataFrame({"item_id": item_ids.astype(str).to_numpy()}).merge(w, on="item_id", how="left")
    slots = slots.fillna({"genre": "(none)", "weight": 1.0})
    return (slots.groupby("genre")["weight"].sum() / max(len(item_ids), 1)).sort_index()


def pandera_result(check: str, schema, frame: pd.DataFrame, what: str) -> Result:
    """A pandera schema over a frame as one result: the number of failure cases, and the first few
    rules that failed."""
    import pandera.errors

    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as e:
        cases = e.failure_cases
        rules = cases.groupby(["column", "check"], dropna=False).size().sort_values(ascending=False)
        said = "; ".join(f"{c if isinstance(c, str) else 'frame'}: {k} ({n} rows)" for (c, k), n in rules.head(5).items())
        return Result(check, float(len(cases)), False, f"{what}: {len(cases)} failure cases: {said}", None, 0.0)
    return Result(check, 0.0, True, f"{what}: {len(frame)} rows valid", None, 0.0)


def records(ctx, scope: str, results: list[Result]) -> pd.DataFrame:
    """A check stage's rows for tonight, each logged with its outcome."""
    import logging

    out = frame(ctx.ds, scope, results, ctx.cfg.checks)
    for r in out.itertuples():
        logging.getLogger("genre").info("check %s (%s): %s: %s", r.check, r.severity,
                                        "passed" if r.passed else "FAILED", r.message)
    return out


def frame(ds: str, scope: str, results: list[Result], cfg_checks) -> pd.DataFrame:
    """The rows a check stage commits: one per check that is not off, with its severity."""
    rows = [{"night": str(ds), "check": r.check, "scope": scope, "value": float(r.value), "lower": r.lower,
             "upper": r.upper, "passed": bool(r.passed), "severity": cfg_checks.severity[r.check],
             "message": r.message, "detail": json.dumps(r.detail, sort_keys=True) if r.detail else None}
            for r in results if cfg_checks.severity[r.check] != "off"]
    return pd.DataFrame(rows, columns=COLUMNS)


def failed(records: pd.DataFrame, severity: str) -> list[str]:
    """Messages of the checks that failed with this severity."""
    bad = records[(~records["passed"].astype(bool)) & (records["severity"] == severity)]
    return [f"{c}: {m}" for c, m in zip(bad["check"], bad["message"])]


def metrics(records: pd.DataFrame) -> dict:
    """The stage's MLflow metrics: each check's figure and whether it passed, and the failure counts."""
    out = {}
    for r in records.itertuples():
        out[f"check.{r.check}"] = float(r.value)
        out[f"check.{r.check}.passed"] = int(bool(r.passed))
    out["checks_failed_blocking"] = len(failed(records, "blocking"))
    out["checks_failed_warning"] = len(failed(records, "warning"))
    return out
