import json
from pathlib import Path

import pandas as pd
import pytest

from genre_lib.lake.history import read_history_pandas
from genre_lib.lake.storage import Lake

M = {"run_id": "r1", "config_hash": "h"}


def items(n=3):
    return pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "title": "t", "description": None,
                         "genres": [["Drama"]] * n, "tags": None})


def test_commit_writes_manifest_and_replaces(tmp_path):
    lake = Lake(str(tmp_path))
    m = lake.write_pandas("items_clean", "2026-11-22", items(3), M)
    assert m["row_count"] == 3 and m["schema_version"] == 1 and m["run_id"] == "r1" and m["config_hash"] == "h"
    assert json.loads((tmp_path / "items_clean/ds=2026-11-22/_SUCCESS").read_text())["row_count"] == 3
    lake.write_pandas("items_clean", "2026-11-22", items(5), {**M, "run_id": "r2"})
    assert len(lake.read_pandas("items_clean", "2026-11-22")) == 5
    assert lake.manifest("items_clean", "2026-11-22")["run_id"] == "r2"
    assert sorted(p.name for p in (tmp_path / "items_clean").iterdir()) == ["ds=2026-11-22"]
    # the first attempt stays beside the second until the grace period is over (tests/test_lake_protocol.py)
    assert len([p for p in (tmp_path / "items_clean/ds=2026-11-22").iterdir() if p.name.startswith("_attempt-")]) == 2


def test_uncommitted_partitions_are_invisible(tmp_path):
    lake = Lake(str(tmp_path))
    lake.write_pandas("items_clean", "2026-11-21", items(2), M)
    staged = lake.staging("items_clean", "2026-11-22")  # a writer that died before commit
    (tmp_path / "items_clean" / "ds=2026-11-23").mkdir()  # a partition without _SUCCESS
    assert staged and lake.committed("items_clean") == ["2026-11-21"]
    assert lake.latest("items_clean", "2026-11-30") == "2026-11-21"
    with pytest.raises(FileNotFoundError, match="no committed partition"):
        lake.read_pandas("items_clean", "2026-11-23")


def test_schema_is_enforced(tmp_path):
    with pytest.raises(ValueError, match="lacks columns"):
        Lake(str(tmp_path)).write_pandas("items_clean", "2026-11-22", items().drop(columns="title"), M)
    with pytest.raises(ValueError, match="run_id"):
        Lake(str(tmp_path)).write_pandas("items_clean", "2026-11-22", items(), {"config_hash": "h"})


def test_history_unions_partitions_without_repeats(tmp_path):
    lake = Lake(str(tmp_path))
    ts = pd.Timestamp("2026-11-20T10:00", tz="UTC")
    day1 = pd.DataFrame({"user_id": ["u1"], "item_id": ["i1"], "event": ["view"], "rating": [None], "ts": [ts]})
    day2 = pd.concat([day1, day1.assign(item_id="i2")])  # a snapshot repeats the earlier row
    lake.write_pandas("interactions_clean", "2026-11-20", day1, M)
    lake.write_pandas("interactions_clean", "2026-11-21", day2, M)
    lake.write_pandas("interactions_clean", "2026-11-22", day1.assign(item_id="i3"), M)
    assert len(read_history_pandas(lake, "2026-11-21")) == 2
    assert len(read_history_pandas(lake, "2026-11-22", lookback_days=1)) == 1


def test_removed_scratch_leaves_no_empty_folders_and_spares_a_sibling(tmp_path):
    lake = Lake(str(tmp_path))
    mine, theirs = lake.scratch("evaluate", "2026-11-22"), lake.scratch("evaluate", "2026-11-22")
    for parts in (mine, theirs):
        Path(lake.path(*parts, "truth")).mkdir(parents=True)
        Path(lake.path(*parts, "truth", "part-00000.parquet")).write_bytes(b"x")
    lake.remove_scratch(mine)
    assert not Path(lake.path(*mine)).exists()
    assert Path(lake.path(*theirs, "truth", "part-00000.parquet")).exists()  # another run's scratch stays
    lake.remove_scratch(theirs)
    assert not (tmp_path / "_artifacts").exists()  # ds=<D>, the stage and _artifacts went with the last one
    lake.remove_scratch(theirs)  # removing twice is harmless
