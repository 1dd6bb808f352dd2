"""The interaction history of a night: the union of committed interactions_clean partitions."""
from __future__ import annotations

import datetime as dt
from typing import Optional

import pandas as pd

from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import schema


def history_dates(lake: Lake, table: str, up_to: dt.date | str, lookback_days: Optional[int] = None) -> list[str]:
    """Committed partitions of a table on or before `up_to` (within `lookback_days` when set)."""
    end = dt.date.fromisoformat(str(up_to))
    start = end - dt.timedelta(days=lookback_days - 1) if lookback_days else dt.date.min
    return [d for d in lake.committed(table) if start <= dt.date.fromisoformat(d) <= end]


def read_history_pandas(lake: Lake, up_to: dt.date | str, lookback_days: Optional[int] = None) -> pd.DataFrame:
    """Every clean interaction known on night `up_to`: the union of committed interactions_clean
    partitions, without repeats (a snapshot source commits its whole history in each partition)."""
    frames = [lake.read_pandas("interactions_clean", d) for d in history_dates(lake, "interactions_clean", up_to, lookback_days)]
    return history_frame(frames)


def history_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """interactions_clean rows of several partitions as one history: without repeats, in time order."""
    if not frames:
        return schema("interactions_clean").empty_table().to_pandas()
    df = pd.concat(frames, ignore_index=True).drop_duplicates(["user_id", "item_id", "event", "ts"])
    return df.sort_values(["ts", "user_id", "item_id"], kind="stable").reset_index(drop=True)
