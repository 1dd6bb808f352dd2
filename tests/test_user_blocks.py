"""The night's history in user blocks (genre_lib/lake/user_blocks.py): every interaction once, each user in
one block, repeats across snapshot partitions dropped as read_history_pandas drops them, the scratch
removed; a night within user_block_rows is one block, read_history_pandas itself."""
import math

import numpy as np
import pandas as pd

from genre_lib.lake.history import read_history_pandas
from genre_lib.lake.storage import Lake
from genre_lib.lake.user_blocks import UserBlocks, block_of
from tests.test_recommend import tiny_data

MAN = {"run_id": "t", "config_hash": "x"}


def _sorted(df):
    return df.sort_values(["user_id", "item_id", "event", "ts"]).reset_index(drop=True)


def test_blocks_hold_every_interaction_once_and_each_user_in_one_block(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    inter, *_ = tiny_data(n_users=60, n=3000)
    lake.write_pandas("interactions_clean", "2026-11-21", inter.iloc[: len(inter) // 2], MAN)
    lake.write_pandas("interactions_clean", "2026-11-22", inter, MAN)  # a snapshot: the first half again
    whole = read_history_pandas(lake, "2026-11-22")
    blocks = UserBlocks(lake, "2026-11-22", None, len(inter) // 2, "recommend")
    assert blocks.n == math.ceil((len(inter) + len(inter) // 2) / (len(inter) // 2)) == 3
    frames = list(blocks.frames())
    users = [set(f["user_id"]) for f in frames]
    assert all(users) and sum(map(len, users)) == whole["user_id"].nunique() == len(set().union(*users))
    pd.testing.assert_frame_equal(_sorted(pd.concat(frames)), _sorted(whole))
    for b, f in enumerate(frames):
        assert f["ts"].is_monotonic_increasing
        assert (block_of(f["user_id"], blocks.n) == b).all()
    scratch = tmp_path / "lake" / "_artifacts" / "recommend"
    assert len(list(scratch.rglob("*.parquet"))) == 2 * blocks.n  # a file per (partition, block)
    blocks.remove()
    assert not list(scratch.rglob("*.parquet"))


def test_a_night_within_the_budget_is_one_block_without_scratch(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    inter, *_ = tiny_data()
    lake.write_pandas("interactions_clean", "2026-11-22", inter, MAN)
    blocks = UserBlocks(lake, "2026-11-22", None, len(inter), "recommend")
    assert blocks.n == 1
    pd.testing.assert_frame_equal(blocks.frame(0), read_history_pandas(lake, "2026-11-22"))
    assert not (tmp_path / "lake" / "_artifacts").exists()


def test_block_of_is_stable_and_spreads():
    ids = [f"user-{i}" for i in range(4000)]
    b = block_of(ids, 4)
    np.testing.assert_array_equal(b, block_of(list(reversed(ids)), 4)[::-1])
    assert set(np.bincount(b)) and np.bincount(b).min() > 800
