"""Train/test protocols for offline evaluation.

Both return (train, test) frames with the input's columns; nothing from `test` may reach a fitted part.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def stratified_split(df: pd.DataFrame, ratio: float = 0.75, filter_by: str = "item", seed: int = 42,
                     col_user: str = "user_id", col_item: str = "item_id") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Microsoft Recommenders' `python_stratified_split` (the version behind its published ML-100k
    table): one uniform number per row in the input's row order after `np.random.seed(seed)`, rows
    sorted by (group, number), the first round(ratio * count) rows of each group train.

    The row order of `df` matters: pass ML-100k in u.data order to reproduce the published split.
    `round` is numpy's (half to even), as pandas applies it to the count column."""
    if filter_by not in ("user", "item"):
        raise ValueError("filter_by must be 'user' or 'item'")
    by = col_user if filter_by == "user" else col_item
    data = df.copy()
    np.random.seed(seed)
    data["_random"] = np.random.rand(data.shape[0])
    data = data.sort_values([by, "_random"])
    groups = data.groupby(by, sort=False)
    count = groups[by].transform("count")
    rank = groups.cumcount() + 1
    train_mask = rank <= np.round(ratio * count)
    data = data.drop(columns="_random")
    return data[train_mask.to_numpy()], data[~train_mask.to_numpy()]


def temporal_split(df: pd.DataFrame, holdout_share: float = 0.2, col_user: str = "user_id",
                   col_item: str = "item_id", col_ts: str = "ts") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's last `holdout_share` of interactions by time held out (round half up, so a user
    with fewer than 1/(2*share) interactions keeps them all in train). Ties in time break by item id
    so the split does not depend on input order."""
    data = df.sort_values([col_user, col_ts, col_item], kind="stable")
    groups = data.groupby(col_user, sort=False)
    count = groups[col_user].transform("count").to_numpy()
    rank = groups.cumcount().to_numpy() + 1
    n_test = np.floor(holdout_share * count + 0.5).astype(int)
    test_mask = rank > count - n_test
    return data[~test_mask], data[test_mask]


def cold_items(item_ids, share: float, seed: int, fold: int = 0) -> np.ndarray:
    """The items held out as cold in item fold `fold`: those whose seeded hash of the id, uniform in
    [0, 1), falls in [fold x share, (fold + 1) x share), so an item stays cold, or not, as the
    catalogue grows, and folds 0..1/share - 1 hold each item once."""
    import hashlib

    ids = np.asarray(sorted({str(i) for i in item_ids}), dtype=object)
    u = np.array([int.from_bytes(hashlib.sha256(f"cold:{seed}:{i}".encode()).digest()[:8], "big") / 2.0 ** 64
                  for i in ids])
    return ids[(u >= fold * share) & (u < (fold + 1) * share)]


def cold_item_split(df: pd.DataFrame, share: float, seed: int = 42,
                    fold: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(train, test, cold ids): every interaction with a cold item (of item fold `fold`) is held out;
    test keeps those of users who still have a training history (someone to recommend to)."""
    cold = cold_items(df["item_id"].unique(), share, seed, fold)
    is_cold = df["item_id"].astype(str).isin(set(cold)).to_numpy()
    train, test = df[~is_cold], df[is_cold]
    return train, test[test["user_id"].isin(set(train["user_id"]))], cold


def split(df: pd.DataFrame, protocol: str, holdout_share: float = 0.2, seed: int = 42):
    if protocol == "temporal":
        return temporal_split(df, holdout_share)
    if protocol == "stratified":
        return stratified_split(df, ratio=0.75, filter_by="item", seed=seed)
    raise ValueError(f"eval.protocol: unknown protocol {protocol!r}")


def new_items(test: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """The held-out rows a ranker can get right: recommendations never repeat a training item, so a
    held-out repeat of one is dropped (ids as strings, like every fitted model's)."""
    test = test.assign(user_id=test["user_id"].astype(str), item_id=test["item_id"].astype(str))
    seen = train[["user_id", "item_id"]].astype(str).drop_duplicates()
    test = test.merge(seen, on=["user_id", "item_id"], how="left", indicator=True)
    return test[test["_merge"] == "left_only"].drop(columns="_merge")
