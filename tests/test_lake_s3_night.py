"""A night whose pyarrow stages keep their lake on an S3 API server (moto, tests/s3_server.py) writes
the same tables as a night on the local disk. Spark's S3 connector (hadoop-aws) is not installable
here, so the Spark stages' tables of the night (clean_interactions, genre_weights) are copied into the
object store through the lake's own commit (genre_lib/lake/copy.py) and the stages that do their I/O
through pyarrow run there: embed_texts, train_classifier, recommend, evaluate (its hand-over to the
local Spark on a local scratch_root), publish (its event as an object)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from genre_lib.lake.copy import copy
from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import STAGE_SPECS, TABLES
from genre_lib.serve.events import ObjectLogPublisher
from tests.reliability.harness import Workspace

D = "2026-11-22"
SPARK = [s for s, spec in STAGE_SPECS.items() if s in ("clean_interactions", "genre_weights")]
PYARROW = ["embed_texts", "train_classifier", "recommend", "evaluate", "publish"]


def exact(lake: Lake, table: str, ds: str):
    if TABLES[table].schema is None:
        name = "metrics.json" if table == "evaluation" else "decision.json"
        doc = lake.read_json(table, ds, name)
        if table == "publish_log":  # the gate's verdict; store paths and times differ by design
            return {k: doc["decision"][k] for k in ("publish", "metric", "baseline", "metric_name", "model")}
        return doc
    df = lake.read_pandas(table, ds).drop(columns=["run_id"], errors="ignore")
    for c in df.columns:  # vectors and lists as tuples: compared exactly, sortable
        if df[c].map(lambda v: isinstance(v, (list, np.ndarray))).any():
            df[c] = df[c].map(lambda v: tuple(np.asarray(v).tolist()))
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_pyarrow_stages_on_s3_write_what_they_write_on_disk(tmp_path, s3):
    local = Workspace(tmp_path / "disk")
    local.generate()
    for stage in [*SPARK, *PYARROW]:
        local.run(stage, D, "disk")

    root = s3.root("night")
    remote = Workspace(tmp_path / "s3", [f"lake.root={root}", f"data.path={tmp_path}/disk/data",
                                         f"lake.scratch_root={tmp_path}/s3/scratch"])
    remote.lake = Lake(root)
    tables = [t for t, d in TABLES.items() if d.stage in SPARK]
    assert copy(local.lake, remote.lake, tables) == sum(len(local.lake.committed(t)) for t in tables)
    for stage in PYARROW:
        remote.run(stage, D, "s3")

    for stage in PYARROW:
        for table in STAGE_SPECS[stage].writes:
            a, b = exact(local.lake, table, D), exact(remote.lake, table, D)
            if isinstance(a, pd.DataFrame):
                pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{table} on disk vs on S3")
            else:
                assert a == b, f"{table} on disk vs on S3"
            assert remote.lake.manifest(table, D)["files"]  # committed by manifest on the object store
    events = ObjectLogPublisher(root).read()
    assert [e["ds"] for e in events] == [D]
