"""Offline evaluation of the A/B variants: metrics.json's `variants_ab`.

Each variant is scored on its own test users, assigned by the nightly's rule (ab.assign), with a
model fit on the training split with the variant's settings (ab.arms: one fit per distinct set of
fit-time settings); with a kept re-ranker, each variant's list is its own candidates re-ordered by
the evaluation's trees, as the recommend stage publishes it. Intervals are percentile bootstraps
over users (BOOTSTRAP resamples, seeded by eval.seed); the difference of the first two variants
resamples each variant's users apart, as the groups are disjoint. With eval.folds = N > 1, users
fall into N seeded folds; fold f's users are tested on their held-out rows while everyone else's
whole history trains; per variant, the mean and the standard deviation (ddof 1) over folds of each
metric go to `variants_ab[name]["folds"]`.
Scored with the numpy reference of metrics.py: intervals need per-user values.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import pandas as pd

from genre_lib.protocol.metrics import per_user_metrics
from genre_lib.protocol.splits import new_items
from genre_lib.ranking import ab, blend, rerank
from genre_lib.ranking import model as ranker

AB_METRICS = ("ndcg", "precision", "recall", "map")
BOOTSTRAP = 1000
_CELLS = 4_000_000  # resampled values held at once: the bootstrap's memory does not grow with users

Fit = Callable[[pd.DataFrame, object], "ranker.Model"]  # (training rows, RecommendConfig) -> model


def per_variant(train: pd.DataFrame, test: pd.DataFrame, cfg, fit: Fit, model=None,
                cold: Optional[np.ndarray] = None, second=None) -> list[tuple[str, float, pd.DataFrame]]:
    """(name, configured share, per-user metrics of the variant's test users) per variant, in
    declared order. `test`: held-out rows of new items; `model`: fit on `train` with cfg.recommend
    (fitted here when None); `cold`: item ids every variant ranks among (cold_items protocol);
    `second`: the evaluation's re-ranker (rerank.Reranker), which re-orders each variant's own
    candidates as the recommend stage does, or None for each variant's blend."""
    k = cfg.eval.k
    cols = [f"{m}@{k}" for m in AB_METRICS]
    model = fit(train, cfg.recommend) if model is None else model
    users = np.flatnonzero(pd.Index(model.user_ids).isin(test["user_id"].unique()))
    out = []
    for arm in ab.arms(cfg, model, lambda rc: fit(train, rc), users=users):
        if not len(arm.rows):
            out.append((arm.name, arm.share, pd.DataFrame(columns=cols, dtype=float)))
            continue
        m = arm.model
        if second is not None:
            arm_cfg = cfg.model_copy(update={"recommend": arm.rc})
            recs = rerank.evaluation_rank({"rerank": second}, m, train, arm.rows, arm_cfg)["rerank"]
        else:
            cands = None if cold is None else np.flatnonzero(pd.Index(m.item_ids).isin(set(cold)))
            top = blend.recommend(m, arm.rc.weights, k, arm.rc.execution.block_users, users=arm.rows, candidates=cands)
            recs = top.frame(m)
        out.append((arm.name, arm.share, per_user_metrics(test, recs, k)[cols]))
    return out


def bootstrap_means(values: np.ndarray, rng: np.random.Generator, n_boot: int = BOOTSTRAP) -> np.ndarray:
    """n_boot x metrics: the column means of `values` (users x metrics) over resamples of its rows."""
    n = len(values)
    out = np.full((n_boot, values.shape[1]), np.nan)
    if n == 0:
        return out
    chunk = max(1, _CELLS // (n * values.shape[1]))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        out[start:start + size] = values[rng.integers(0, n, size=(size, n))].mean(1)
    return out


def _interval(draws: np.ndarray) -> Optional[list[float]]:
    if np.isnan(draws).any():
        return None
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return [float(lo), float(hi)]


def summarise(groups: list[tuple[str, float, pd.DataFrame]], k: int, seed: int, n_boot: int = BOOTSTRAP) -> dict:
    """The `variants_ab` block from per-user metrics: per variant users, share, means and ci95;
    "difference": second minus first with its ci95. A variant without test users has nulls."""
    cols = [f"{m}@{k}" for m in AB_METRICS]
    rng = np.random.default_rng(seed)
    out, draws, means = {}, {}, {}
    for name, share, per in groups:
        vals = per[cols].to_numpy(float)
        means[name] = vals.mean(0) if len(vals) else np.full(len(cols), np.nan)
        draws[name] = bootstrap_means(vals, rng, n_boot)
        out[name] = {"users": int(len(vals)), "share": share,
                     **{c: _num(means[name][j]) for j, c in enumerate(cols)},
                     "ci95": {c: _interval(draws[name][:, j]) for j, c in enumerate(cols)}}
    a, b = groups[0][0], groups[1][0]
    out["difference"] = {"a": a, "b": b, **{c: {"value": _num(means[b][j] - means[a][j]),
                                                "ci95": _interval(draws[b][:, j] - draws[a][:, j])}
                                            for j, c in enumerate(cols)}}
    return out


def _num(x: float) -> Optional[float]:
    return None if np.isnan(x) else float(x)


def folds(train: pd.DataFrame, held: pd.DataFrame, cfg, fit: Fit, second=None) -> dict[str, dict]:
    """name -> {"n": folds, metric: {"mean", "std"}} over eval.folds user-level folds; `held`:
    the protocol's held-out rows as split (repeats of training items included)."""
    ec, k = cfg.eval, cfg.eval.k
    cols = [f"{m}@{k}" for m in AB_METRICS]
    everyone = np.asarray(sorted(set(train["user_id"].astype(str)) | set(held["user_id"].astype(str))), dtype=object)
    fold_of = pd.Series(np.random.default_rng(ec.seed).permutation(len(everyone)) % ec.folds, index=everyone)
    mine_all = held["user_id"].astype(str).map(fold_of).to_numpy()
    scores: dict[str, list[np.ndarray]] = {}
    for f in range(ec.folds):
        mine = mine_all == f
        fold_train = pd.concat([train, held[~mine]], ignore_index=True)
        for name, _, per in per_variant(fold_train, new_items(held[mine], fold_train), cfg, fit, second=second):
            if len(per):
                scores.setdefault(name, []).append(per[cols].to_numpy(float).mean(0))
    out = {}
    for v in cfg.ab.variants:
        s = np.asarray(scores.get(v.name, []))
        out[v.name] = {"n": int(len(s)), **{c: {"mean": _num(s[:, j].mean()) if len(s) else None,
                                                "std": _num(s[:, j].std(ddof=1)) if len(s) > 1 else None}
                                            for j, c in enumerate(cols)}}
    return out


def variants_ab(train: pd.DataFrame, held: pd.DataFrame, cfg, fit: Fit, model=None,
                cold: Optional[np.ndarray] = None, second=None) -> dict:
    """metrics.json's `variants_ab`: `held` the protocol's held-out rows as split; `fit(rows, rc)`
    fits a model as evaluate does; `model` the one evaluate fit on `train` with cfg.recommend;
    `second` the re-ranker evaluate kept (each variant's candidates re-ordered), else None."""
    groups = per_variant(train, new_items(held, train), cfg, fit, model, cold, second)
    out = summarise(groups, cfg.eval.k, cfg.eval.seed)
    if cfg.eval.folds > 1:
        for name, spread in folds(train, held, cfg, fit, second).items():
            out[name]["folds"] = spread
    return out


def mlflow_metrics(block: Optional[dict]) -> dict[str, float]:
    """`ab.<variant>.<metric>_at_<k>` (with .ci95_lo/.ci95_hi, .folds_mean/.folds_std), `ab.<variant>.users`
    and `ab.diff.<metric>_at_<k>` (with its interval) from a `variants_ab` block."""
    if not block:
        return {}
    out = {}

    def put(key: str, v) -> None:
        if v is not None:
            out[key.replace("@", "_at_")] = float(v)

    for name, entry in block.items():
        if name == "difference":
            for c, d in entry.items():
                if isinstance(d, dict):
                    put(f"ab.diff.{c}", d["value"])
                    for side, v in zip(("lo", "hi"), d["ci95"] or (None, None)):
                        put(f"ab.diff.{c}.ci95_{side}", v)
            continue
        put(f"ab.{name}.users", entry["users"])
        for c, ci in entry["ci95"].items():
            put(f"ab.{name}.{c}", entry[c])
            for side, v in zip(("lo", "hi"), ci or (None, None)):
                put(f"ab.{name}.{c}.ci95_{side}", v)
            for stat in ("mean", "std"):
                put(f"ab.{name}.{c}.folds_{stat}", entry.get("folds", {}).get(c, {}).get(stat))
    return out


def markdown(block: Optional[dict], k: int) -> str:
    """The A/B table of the evaluation report ("" without A/B)."""
    if not block:
        return ""
    cols = [f"{m}@{k}" for m in AB_METRICS]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    span = lambda ci: "" if ci is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]"  # noqa: E731
    lines = ["", "## A/B variants (ci95: bootstrap over users)", "",
             "| variant | users | share | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for name, e in block.items():
        if name != "difference":
            lines.append(f"| {name} | {e['users']} | {e['share']} | "
                         + " | ".join(fmt(e[c]) + span(e["ci95"][c]) for c in cols) + " |")
    d = block["difference"]
    lines.append(f"| {d['b']} - {d['a']} | | | " + " | ".join(fmt(d[c]["value"]) + span(d[c]["ci95"]) for c in cols) + " |")
    return "\n".join(lines) + "\n"
