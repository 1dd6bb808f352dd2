"""recommend.execution.engine=spark: the all-user top-N ranked on Spark executors instead of the driver (the
recommend stage's model, and evaluate's refit on its training split).

The driver fits the model as the local engine does and writes it once per night (each A/B arm's
model, settings and user rows) as an artifact in the lake, `_artifacts/recommend/ds=<D>/<run>.pkl`;
Spark gets one task per block of `recommend.execution.block_users` users; each Python worker loads the artifact
once (cached per process, so a reused worker does not load it again) and ranks its blocks with the
same `score` function the local engine runs, emitting `recommendations` rows that the stage commits
through the lake's usual protocol. Same items in the same order as local; scores equal to float32
rounding.
"""
from __future__ import annotations

import pickle
from typing import Callable, Iterator, Optional

import pandas as pd

from genre_lib.lake.spark import ship_package
from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import schema

_loaded: dict[str, list] = {}  # artifact path -> arms, per Python worker process


def _arms(lake: Lake, path: str) -> list:
    if path not in _loaded:
        with lake.fs.open_input_stream(path) as f:
            _loaded[path] = pickle.loads(f.read())
    return _loaded[path]


def rank(ctx, arms: list, score: Callable, ddl: Optional[str] = None):
    """(frame, done): a lazy Spark frame of the night's `recommendations` rows (or of the Spark
    schema `ddl`), and a function that removes the model artifact; call it once the frame has been
    written. `arms` are (name, model, rc, rows or None for every user); `score(model, rc, name,
    users) -> frame` ranks one block."""
    spark = ctx.spark
    ship_package(spark)
    ddl = ddl or _ddl()
    columns = [c.strip().split(" ")[0] for c in ddl.split(",")]
    lake, parts = ctx.lake, ctx.lake.scratch("recommend", ctx.ds)
    lake.fs.create_dir(lake.path(*parts[:-1]), recursive=True)
    path = f"{lake.path(*parts)}.pkl"
    with lake.fs.open_output_stream(path) as f:
        f.write(pickle.dumps(arms, protocol=pickle.HIGHEST_PROTOCOL))
    tasks = []
    for a, (_, model, rc, rows) in enumerate(arms):
        n = model.n_users if rows is None else len(rows)
        tasks += [(a, s, min(n, s + rc.execution.block_users)) for s in range(0, n, rc.execution.block_users)]
    blocks = spark.createDataFrame(pd.DataFrame(tasks, columns=["arm", "start", "stop"]), "arm int, start int, stop int")
    blocks = blocks.repartition(max(1, len(tasks)))

    def ranked(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import numpy as np

        loaded = _arms(lake, path)
        for frame in frames:
            for a, start, stop in frame.itertuples(index=False):
                name, model, rc, rows = loaded[a]
                users = (np.arange(model.n_users) if rows is None else np.asarray(rows))[start:stop]
                yield score(model, rc, name, users)[columns]

    out = blocks.mapInPandas(ranked, ddl)

    def done() -> None:
        lake.fs.delete_file(path)

    return out, done


def _ddl() -> str:
    from genre_lib.lake.spark import _ARROW_TO_SPARK

    return ", ".join(f"{f.name} {_ARROW_TO_SPARK[f.type]}" for f in schema("recommendations"))
