"""The night's history in blocks of users, every interaction of a user in the same block: what the
ranking stages fit and rank one block at a time at scale (recommend.fit_items / fit_users).

A night of at most `recommend.execution.user_block_rows` interactions is one block, read_history_pandas itself.
A larger one is spread once, a record batch at a time, into n = ceil(rows / user_block_rows) parquet
folders in the lake's scratch space `_artifacts/<stage>/ds=<D>/<uuid>/` by a hash of the user id
(pandas' fixed-key SipHash: the same user lands in the same block every run), and each block is read
back alone, repeats dropped and in time order like read_history_pandas. Memory is one batch while
spreading and one block while reading, whatever the night's size. `remove` deletes the scratch.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from genre_lib.lake.storage import Lake
from genre_lib.lake.history import history_dates, history_frame, read_history_pandas

TABLE = "interactions_clean"


def block_of(user_ids, n: int) -> np.ndarray:
    """The block (0..n-1) of each user id."""
    ids = pd.Series(user_ids, dtype=object).astype(str).to_numpy(dtype=object)
    return (pd.util.hash_array(ids) % np.uint64(n)).astype(np.int64)


class UserBlocks:
    def __init__(self, lake: Lake, ds: dt.date | str, lookback_days: Optional[int], block_rows: int, stage: str):
        self.lake, self.ds, self.lookback = lake, str(ds), lookback_days
        self.dates = history_dates(lake, TABLE, ds, lookback_days)
        rows = sum(int(lake.manifest(TABLE, d).get("row_count", 0)) for d in self.dates)
        self.n = max(1, math.ceil(rows / block_rows))  # repeats (snapshot sources) counted: n errs high
        self.parts = lake.scratch(stage, ds)
        self._one: Optional[pd.DataFrame] = None
        if self.n > 1:
            self._spread()

    def _folder(self, b: int) -> str:
        return self.lake.path(*self.parts, f"block={b:05d}")

    def _spread(self) -> None:
        for b in range(self.n):
            self.lake.fs.create_dir(self._folder(b), recursive=True)
        for d in self.dates:
            writers: dict[int, pq.ParquetWriter] = {}
            try:
                for batch in self.lake.read_batches(TABLE, d):
                    table = pa.Table.from_batches([batch])
                    blocks = block_of(table.column("user_id").to_pandas(), self.n)
                    for b in np.unique(blocks):
                        if b not in writers:
                            writers[b] = pq.ParquetWriter(f"{self._folder(int(b))}/ds={d}.parquet", table.schema,
                                                          filesystem=self.lake.fs)
                        writers[b].write_table(table.filter(pa.array(blocks == b)))
            finally:
                for w in writers.values():
                    w.close()

    def frame(self, b: int) -> pd.DataFrame:
        """Every interaction of block b's users, as read_history_pandas gives the whole night."""
        if self.n == 1:
            if self._one is None:  # kept: a one-block night is read once, however often it is asked for
                self._one = read_history_pandas(self.lake, self.ds, self.lookback)
            return self._one
        data = pads.dataset(self._folder(b), filesystem=self.lake.fs, format="parquet")
        return history_frame([data.to_table().to_pandas()] if data.files else [])

    def frames(self) -> Iterator[pd.DataFrame]:
        return (self.frame(b) for b in range(self.n))

    def remove(self) -> None:
        self._one = None
        self.lake.remove_scratch(self.parts)
