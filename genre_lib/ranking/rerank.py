"""The learned second stage: LightGBM lambdarank re-orders the blend's top M candidates per user.

    fit(history, catalogue, cfg, run_date) -> Reranker   trained on a split of `history` only
    Reranker.rank(model, interactions, rc, users)  -> TopK        top_n per user, reasons attached
    evaluation_fit(train, catalogue, cfg, run_date) -> ({name: Reranker}, decision)   evaluate's
    evaluation_rank(rankers, model, train, users, cfg) -> {name: recs}   per block of users
    night(history, catalogue, cfg, run_date) -> Reranker | None   the recommend stage's part

Training rows come from the evaluation protocol one level down (splits.split on `history`): the
first stage is fitted on the inner train, its top `rerank.candidates` per user are the rows, the
inner holdout's new items the labels (binary). The labelled users are drawn (seeded) into a
fitting slice and a `val_share` slice for early stopping and the auto decision (re-ranker vs
blend, nDCG@eval.k there, kept by auto only for a gain above 2 paired standard errors). Nothing
outside `history` is read: at evaluation `history` is the training split, so the test split never
fits or chooses anything. The trees then rank a first stage refitted on all of `history`.

Features: genre_lib/ranking/rerank_features.py (its groups: evaluation retrains without each one).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import pandas as pd

from genre_lib.protocol.metrics import per_user_metrics
from genre_lib.protocol.splits import new_items, split
from genre_lib.ranking import model as ranker
from genre_lib.ranking import rerank_registry as registry
from genre_lib.ranking.blend import ranked_frame, recommend
from genre_lib.ranking.explain import explain
from genre_lib.ranking.rerank_features import (
    COMPONENTS,
    FEATURES,
    GROUPS,
    LABELS,
    _rank_within,
    features,
    run_lengths,
    side_data,
)


def candidates(model, interactions: pd.DataFrame, rc, cfg, users=None):
    """The blend's (recommend section `rc`) top rerank.candidates per user, every available scorer's
    standardised value gathered, and their features from `interactions` (what `model` was fitted on):
    (TopK, feature frame)."""
    top = recommend(model, rc.weights, cfg.rerank.candidates, rc.execution.block_users, users=users, gather=COMPONENTS)
    return top, features(model, side_data(model, interactions, cfg.rerank.last_items), top)


def _labels(model, top, truth: pd.DataFrame) -> np.ndarray:
    u = pd.Index(model.user_ids).get_indexer(truth["user_id"])
    i = pd.Index(model.item_ids).get_indexer(truth["item_id"])
    ok = (u >= 0) & (i >= 0)
    return np.isin(top.users * model.n_items + top.items, u[ok] * model.n_items + i[ok]).astype(np.float32)


def _best(users: np.ndarray, score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of each user's k highest `score` (ties in row order), in user then rank order, and
    their ranks."""
    rank = _rank_within(users, score)
    keep = np.flatnonzero(rank <= k)
    keep = keep[np.lexsort((rank[keep], users[keep]))]
    return keep, rank[keep].astype(int)


def _recs(model, top, score: np.ndarray, k: int) -> pd.DataFrame:
    """Each user's k candidates with the highest `score` as (user_id, item_id, rank)."""
    keep, rank = _best(top.users, score, k)
    return ranked_frame(model, top.users[keep], top.items[keep], rank)


@dataclass
class TrainingSet:
    x: pd.DataFrame
    y: np.ndarray
    top: object          # TopK of the inner model's candidates
    model: object        # first stage fitted on the inner train
    truth: pd.DataFrame  # inner holdout, new items (user_id, item_id)
    fitting: np.ndarray  # rows of the fitting slice (users with a positive)
    stopping: np.ndarray  # rows of the early-stopping slice (users with a positive)
    val_users: np.ndarray  # user rows of the validation slice (all with truth)


def training_set(history: pd.DataFrame, catalogue, cfg, run_date) -> TrainingSet:
    rc, ec = cfg.rerank, cfg.eval
    protocol = ec.protocol if ec.protocol in ("temporal", "stratified") else "temporal"
    inner, holdout = split(history, protocol, ec.holdout_share, ec.seed)
    model = ranker.fit_split(inner, catalogue, cfg, run_date)
    truth = new_items(holdout, inner)[["user_id", "item_id"]]
    users = np.random.default_rng(rc.seed).permutation(
        np.flatnonzero(pd.Index(model.user_ids).isin(truth["user_id"].unique())))
    n_val = max(1, int(round(rc.val_share * len(users))))
    val, fit_users = users[:n_val], users[n_val:]
    if rc.max_train_users and len(fit_users) > rc.max_train_users:  # cost: features for a sample only
        fit_users, val = fit_users[:rc.max_train_users], val[:max(1, int(round(rc.max_train_users * rc.val_share)))]
    top, x = candidates(model, inner, cfg.recommend, cfg, np.sort(np.r_[fit_users, val]))
    y = _labels(model, top, truth)
    positive = np.isin(top.users, np.unique(top.users[y > 0]))  # a query without a positive teaches nothing
    in_val = np.isin(top.users, val)
    return TrainingSet(x, y, top, model, truth, np.flatnonzero(positive & ~in_val),
                       np.flatnonzero(positive & in_val), np.sort(val))


def train(data: TrainingSet, rc, k: int, names: list[str]):
    import lightgbm as lgb

    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [k], "num_leaves": rc.num_leaves,
              "learning_rate": rc.learning_rate, "min_child_samples": rc.min_child_samples,
              "feature_fraction": rc.feature_fraction, "num_threads": rc.threads, "seed": rc.seed,
              "deterministic": True, "force_row_wise": True, "verbose": -1}
    sets = [lgb.Dataset(data.x.iloc[r][names].to_numpy(), data.y[r], group=run_lengths(data.top.users[r]),
                        feature_name=names, free_raw_data=True) for r in (data.fitting, data.stopping)]
    return lgb.train(params, sets[0], rc.n_estimators, valid_sets=[sets[1]],
                     callbacks=[lgb.early_stopping(rc.early_stopping_rounds, verbose=False)])


def path_contributions(booster, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Each feature's contribution to each row's score along the row's path through every tree, the
    trees' base value in the last column; a row sums to its prediction (Saabas, XGBoost's
    approx_contribs): at each split the change of the node's value goes to the split's feature.
    A leaf lookup per tree, where pred_contrib's TreeSHAP costs 6 s for a night's 120,800 rows."""
    n_feat = booster.num_feature()
    tables = []
    for tree in booster.dump_model()["tree_info"]:  # the trees predict() uses (best iteration)
        root = tree["tree_structure"]
        table = np.zeros((tree["num_leaves"], n_feat + 1))
        table[:, -1] = root.get("internal_value", root.get("leaf_value"))
        stack = [(root, np.zeros(n_feat))]
        while stack:
            node, acc = stack.pop()
            if "split_feature" not in node:
                table[node.get("leaf_index", 0), :-1] = acc
                continue
            for child in (node["left_child"], node["right_child"]):
                step = acc.copy()
                step[node["split_feature"]] += child.get("internal_value", child.get("leaf_value")) - node["internal_value"]
                stack.append((child, step))
        tables.append(table)
    leaves = np.asarray(booster.predict(x, pred_leaf=True, num_threads=threads)).reshape(len(x), -1)
    offsets = np.cumsum([0, *(len(t) for t in tables[:-1])])
    stacked = np.vstack(tables) if tables else np.zeros((1, n_feat + 1))
    out = np.zeros((len(x), n_feat + 1))
    for t in range(len(tables)):
        out += stacked[offsets[t] + leaves[:, t]]
    return out


@dataclass
class Reranker:
    booster: object
    names: list[str]
    cfg: object
    decision: dict

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(x[self.names].to_numpy(), num_threads=self.cfg.rerank.threads)

    def rank(self, model, interactions: pd.DataFrame, rc, users=None):
        """The top rc.top_n of each user's rerank.candidates by the trees, as a TopK whose score is
        the trees' output and whose `reasons` name the features that lifted each item most."""
        top, x = candidates(model, interactions, rc, self.cfg, users)
        s = self.predict(x)
        keep, rank = _best(top.users, s, rc.top_n)
        comps = {c: (v[keep] if c in top.weights else np.full(len(keep), np.nan, np.float32))
                 for c, v in top.components.items()}
        out = replace(top, users=top.users[keep], items=top.items[keep], rank=rank, score=s[keep], components=comps)
        out.reasons = self.reasons(model, out, x.iloc[keep])
        return out

    def reasons(self, model, top, x: pd.DataFrame) -> np.ndarray:
        """`rerank: <the features with the largest positive contributions>`, then explain.py's
        genre and most-similar-item parts."""
        contrib = path_contributions(self.booster, x[self.names].to_numpy(), self.cfg.rerank.threads)[:, :-1]
        best = np.argsort(-contrib, 1, kind="stable")[:, :3]
        rest = [r.partition(" | ")[2] for r in explain(model, top)]
        out = np.empty(len(best), dtype=object)
        for j, (b, tail) in enumerate(zip(best, rest)):
            lifted = list(dict.fromkeys(LABELS[self.names[f]] for f in b if contrib[j, f] > 0))[:2] or ["blend"]
            out[j] = " | ".join(["rerank: " + ", ".join(lifted), *([tail] if tail else [])])
        return out


def fit(history: pd.DataFrame, catalogue, cfg, run_date,
        data: Optional[TrainingSet] = None) -> tuple[Reranker, TrainingSet]:
    """Train on a split of `history`; decide (rerank.enabled) on its validation slice."""
    t0 = time.time()
    data = data or training_set(history, catalogue, cfg, run_date)
    k, rc = cfg.eval.k, cfg.rerank
    booster = train(data, rc, k, FEATURES)
    rr = Reranker(booster, list(FEATURES), cfg, {})
    rows = np.flatnonzero(np.isin(data.top.users, data.val_users))
    sub = replace(data.top, users=data.top.users[rows], items=data.top.items[rows])
    truth = data.truth[data.truth["user_id"].isin(set(data.model.user_ids[data.val_users]))]
    per = {name: per_user_metrics(truth, _recs(data.model, sub, s, k), k)[f"ndcg@{k}"]
           for name, s in (("blend", -data.top.rank[rows].astype(float)), ("rerank", rr.predict(data.x.iloc[rows])))}
    diff = per["rerank"] - per["blend"].reindex(per["rerank"].index)
    gain, se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(max(len(diff), 1))) if len(diff) > 1 else np.inf
    # a few hundred validation users are noisy: auto keeps the trees only for a gain above 2 paired SE
    better = gain > 2 * se
    kept = rc.enabled == "on" or (rc.enabled == "auto" and better)
    reason = ("enabled: on" if rc.enabled == "on" else
              f"auto: re-ranker {'beats' if better else 'does not beat'} the blend on validation "
              f"(nDCG@{k} difference {gain:+.4f}, 2 SE {2 * se:.4f})")
    rr.decision = {"enabled": rc.enabled, "kept": bool(kept), "reason": reason, "metric": f"ndcg@{k}",
                   "validation": {n: float(v.mean()) for n, v in per.items()}, "difference": gain, "se": se,
                   "validation_users": int(len(data.val_users)), "train_users": int(len(np.unique(data.top.users[data.fitting]))),
                   "train_rows": int(len(data.fitting)), "best_iteration": int(booster.best_iteration),
                   "candidate_recall": float(data.y.sum() / max(len(data.truth), 1)), "seconds": round(time.time() - t0, 1)}
    return rr, data


def evaluation_fit(train_df: pd.DataFrame, catalogue, cfg, run_date) -> tuple[dict, dict]:
    """evaluate's re-ranker (and, with rerank.ablations, one retrained without each feature group),
    trained on a split of `train_df` alone: (variant name -> Reranker, {} when auto drops it; decision)."""
    rr, data = fit(train_df, catalogue, cfg, run_date)
    if not rr.decision["kept"]:
        return {}, rr.decision
    out = {"rerank": rr}
    if cfg.rerank.ablations:
        for group, names in GROUPS.items():
            keep = [f for f in FEATURES if f not in names]
            out[f"rerank-{group}"] = Reranker(train(data, cfg.rerank, k=cfg.eval.k, names=keep), keep, cfg, {})
    return out, rr.decision


def evaluation_rank(rankers: dict, model, train_df: pd.DataFrame, users: np.ndarray, cfg) -> dict:
    """Each of evaluation_fit's rankers' top eval.k for the user rows `users` of `model` (fitted on
    `train_df`, or on the block of it that holds these users): variant name -> (user_id, item_id, rank)."""
    if not rankers:
        return {}
    top, x = candidates(model, train_df, cfg.recommend, cfg, users)
    return {name: _recs(model, top, r.predict(x), cfg.eval.k) for name, r in rankers.items()}


def night(history: pd.DataFrame, catalogue, cfg, run_date) -> tuple[Optional[Reranker], dict]:
    """The recommend stage's part: the trees of an earlier night (rerank.retrain_days > 1, a version
    registered for the same config in the window) or trees trained on a split of the night's
    history, logged to the active MLflow run and registered; (the re-ranker, or None where auto
    drops it, stage metrics)."""
    found = registry.reusable(cfg, run_date)
    if found is not None:
        booster, decision, version = found
        rr = Reranker(booster, list(booster.feature_name()), cfg, decision)
        registry.note_reuse(decision, version)
    else:
        rr, data = fit(history, catalogue, cfg, run_date)
        registry.register(rr, data.x.iloc[:200], cfg, run_date)
    d = rr.decision
    metrics = {"rerank_kept": float(d["kept"]), "rerank_reused": float(found is not None)}
    if found is None:  # a reused version's validation belongs to the night that trained it (its tags)
        metrics.update({"rerank_fit_seconds": d["seconds"],
                        **{f"rerank_validation_{m}_ndcg": v for m, v in d["validation"].items()}})
    return (rr if d["kept"] else None), metrics
