"""evaluate's scratch space in the lake, and the ranking of evaluation blends on Spark executors
(recommend.execution.engine=spark)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from genre_lib.ranking import blend, spark_rank

RANKED = "model string, user_id string, item_id string, rank int"


def rank_blends(blends: dict, k: int, candidates, model, rc, _name, users: np.ndarray) -> pd.DataFrame:
    """One block of test users ranked under every model (RANKED rows): what the executors run."""
    tops = blend.recommend_many(model, blends, k, rc.execution.block_users, users=users, candidates=candidates)
    return pd.concat([blend.ranked_frame(model, t.users, t.items, t.rank.astype("int32")).assign(model=v)[
        ["model", "user_id", "item_id", "rank"]] for v, t in tops.items()], ignore_index=True)


def remote_ranker(ctx) -> Callable:
    """evaluate's `rank_remote` for recommend.execution.engine=spark: the refit model goes to the executors as
    the recommend stage's does (spark_rank.py), every model's top k comes back as one frame,
    materialised once in the lake's scratch space and removed by `done`."""
    from functools import partial

    def rank_remote(model, blends, users, candidates, k):
        frame, drop_model = spark_rank.rank(ctx, [(None, model, ctx.cfg.recommend, users)],
                                            partial(rank_blends, blends, k, candidates), RANKED)
        scratch = Scratch(ctx)
        try:
            frame.write.parquet(scratch.uri("ranked"))
        finally:
            drop_model()
        return ctx.spark.read.parquet(scratch.uri("ranked")), scratch.remove

    return rank_remote


class Scratch:
    """evaluate's scratch space in the lake, `_artifacts/evaluate/ds=<D>/<uuid>/`, removed by `remove`.
    `frame` hands a pandas frame to Spark as a parquet file there: createDataFrame would keep every row
    in the driver's JVM heap (at ML-25M shape the test split and a model's rows ran 2 GB out); a
    name's `part`s (one per block of users) are files of one folder, `read` as one frame."""

    def __init__(self, ctx):
        self.lake, self.spark = ctx.scratch_lake, ctx.spark
        self.parts = self.lake.scratch("evaluate", ctx.ds)
        self.names: set[str] = set()

    def uri(self, name: str) -> str:
        return self.lake.uri(*self.parts, name)

    def frame(self, frame: pd.DataFrame, name: str, part: int = 0):
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = self.lake.path(*self.parts, name)
        self.lake.fs.create_dir(folder, recursive=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), f"{folder}/part-{part:05d}.parquet",
                       filesystem=self.lake.fs)
        self.names.add(name)
        return self.read(name)

    def has(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str):
        return self.spark.read.parquet(self.uri(name))

    def remove(self) -> None:
        self.lake.remove_scratch(self.parts)
