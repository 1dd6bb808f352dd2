"""The lake's commit: one manifest written last names the attempt's files, on a local disk and on an
S3 API server alike; kill -9 at every write of the protocol while a reader reads leaves the reader
seeing the old partition or the new one, never a mix, never nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from genre_lib.lake.storage import ATTEMPT, SUCCESS, Lake, pyarrow_uri, spark_uri

ROOT = Path(__file__).resolve().parent.parent
M = {"run_id": "r1", "config_hash": "h"}
D = "2026-11-22"


def items(n: int) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "title": f"t{n}", "description": None,
                         "genres": [["Drama"]] * n, "tags": None})


def attempts(lake: Lake, table: str = "items_clean", ds: str = D) -> list[str]:
    import pyarrow.fs as pafs

    infos = lake.fs.get_file_info(pafs.FileSelector(lake.partition(table, ds), allow_not_found=True))
    return sorted(i.base_name for i in infos if i.base_name.startswith(ATTEMPT))


@pytest.fixture(params=["local", "s3"])
def lake_root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "lake")
    server = request.getfixturevalue("s3")
    return server.root(f"{request.node.name}-{os.getpid()}".replace("[", "-").replace("]", ""))


def test_schemes_meet_in_one_place():
    assert pyarrow_uri("s3a://b/lake") == "s3://b/lake" and spark_uri("s3://b/lake") == "s3a://b/lake"
    assert pyarrow_uri("/x/lake") == spark_uri("/x/lake") == "/x/lake"
    assert Lake("s3a://b/lake").uri("t", "ds=1") == "s3a://b/lake/t/ds=1"


def test_rerun_switches_by_manifest_and_vacuum_waits_for_the_grace(lake_root):
    lake = Lake(lake_root)
    first = lake.write_pandas("items_clean", D, items(3), M)
    assert first["files"] == ["part-00000.parquet"] and first["attempt"].startswith(ATTEMPT)
    second = lake.write_pandas("items_clean", D, items(5), {**M, "run_id": "r2"})
    assert lake.manifest("items_clean", D)["attempt"] == second["attempt"] != first["attempt"]
    assert len(lake.read_pandas("items_clean", D)) == 5
    # a reader that read the first manifest before the switch still finds its files
    assert len(pd.concat([pd.read_parquet(f, filesystem=lake.fs) for f in lake.files("items_clean", D, first)])) == 3
    assert attempts(lake) == sorted([first["attempt"], second["attempt"]])
    assert lake.vacuum("items_clean", D) == []  # within the grace period: nothing goes
    would = lake.vacuum("items_clean", D, grace_s=0, dry_run=True)
    assert [w.rsplit("/", 1)[-1] for w in would] == [first["attempt"]] and len(attempts(lake)) == 2
    assert lake.vacuum("items_clean", D, grace_s=0) == would
    assert attempts(lake) == [second["attempt"]] and len(lake.read_pandas("items_clean", D)) == 5


def test_an_attempt_without_manifest_is_invisible_then_vacuumed(lake_root):
    lake = Lake(lake_root)
    staged = lake.staging("items_clean", D)
    lake.write_empty("items_clean", staged)
    assert lake.committed("items_clean") == []
    with pytest.raises(FileNotFoundError, match="no committed partition"):
        lake.read_pandas("items_clean", D)
    assert lake.vacuum("items_clean", grace_s=0) == [staged] and attempts(lake) == []


def test_a_partition_of_the_folder_layout_reads_and_is_replaced(tmp_path):
    """A lake written before manifests named their files: the folder's files are the partition."""
    lake = Lake(str(tmp_path))
    part = tmp_path / "items_clean" / f"ds={D}"
    part.mkdir(parents=True)
    items(4).to_parquet(part / "part-00000.parquet")
    (part / SUCCESS).write_text(json.dumps({**M, "row_count": 4, "table": "items_clean", "ds": D,
                                            "committed_at": "2026-11-22T00:00:00Z"}))
    assert len(lake.read_pandas("items_clean", D)) == 4
    lake.write_pandas("items_clean", D, items(2), M)
    assert len(lake.read_pandas("items_clean", D)) == 2
    lake.vacuum("items_clean", D, grace_s=0)
    assert sorted(p.name for p in part.iterdir() if not p.name.startswith("_")) == []


WRITER = """
import sys
import pandas as pd
from genre_lib.lake.storage import Lake
n = int(sys.argv[2])
df = pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "title": f"t{n}", "description": None,
                   "genres": [["Drama"]] * n, "tags": None})
Lake(sys.argv[1]).write_pandas("items_clean", "2026-11-22", df, {"run_id": f"n{n}", "config_hash": "h"})
"""


def write_dying_at(root: str, n: int, point: str, grace_s: float = 3600) -> int:
    env = {**os.environ, "GENRE_FAULT_AT": point, "GENRE_LAKE_GRACE_S": str(grace_s), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", WRITER, root, str(n)], env=env, cwd=ROOT, timeout=120).returncode


POINTS = ["before_manifest", "manifest_staged", "after_manifest"]


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_write_while_a_reader_reads(lake_root, point):
    """Nights of 3 then 5 rows; a writer of 7 dies at `point` while a reader reads in a loop: every read
    is a whole partition of 3, 5 or (once committed) 7 rows, agreeing with the manifest it came from."""
    lake = Lake(lake_root)
    local = "://" not in lake_root
    if point == "manifest_staged" and not local:
        pytest.skip("an object store's manifest is one PUT: there is no temp file to die after")
    for n in (3, 5):
        lake.write_pandas("items_clean", D, items(n), {**M, "run_id": f"n{n}"})
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                man = lake.manifest("items_clean", D)
                df = pd.concat([pd.read_parquet(f, filesystem=lake.fs) for f in lake.files("items_clean", D, man)])
                titles = set(df["title"])
                if len(df) != man["row_count"] or titles != {f"t{len(df)}"}:
                    errors.append(f"mixed read: {len(df)} rows, titles {titles}, manifest {man['row_count']}")
                seen.append(len(df))
            except Exception as e:  # noqa: BLE001 - nothing, or a half partition, is a failure too
                errors.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        assert write_dying_at(lake_root, 7, point) == -9  # it died there
    finally:
        stop.set()
        t.join()
    assert not errors and seen and set(seen) <= {5, 7}, (errors[:3], set(seen))
    after = len(lake.read_pandas("items_clean", D))
    assert after == (7 if point == "after_manifest" else 5)
    lake.write_pandas("items_clean", D, items(9), {**M, "run_id": "n9"})  # the rerun commits over whatever is left
    assert len(lake.read_pandas("items_clean", D)) == 9


def test_kill_mid_vacuum_leaves_the_committed_partition(lake_root):
    lake = Lake(lake_root)
    lake.write_pandas("items_clean", D, items(3), M)
    # nothing superseded before the write; after its commit, 3's attempt goes: it dies removing it
    assert write_dying_at(lake_root, 7, "mid_vacuum", grace_s=0) == -9
    assert len(lake.read_pandas("items_clean", D)) == 7
    lake.vacuum("items_clean", D, grace_s=0)
    assert attempts(lake) == [lake.manifest("items_clean", D)["attempt"]]


def test_fault_file_kills_once(tmp_path):
    """GENRE_FAULT_FILE: the first writer to reach the named point dies by SIGKILL and takes the file
    away; the same write run again (Airflow's retry) commits."""
    import subprocess
    import sys

    armed = tmp_path / "fault"
    armed.write_text("before_manifest\n")
    code = ("import sys, pandas as pd; from genre_lib.lake.storage import Lake; "
            "Lake(sys.argv[1]).write_json('evaluation', '2026-11-22', 'metrics.json', {'a': 1}, "
            "{'run_id': 'r', 'config_hash': 'h'})")
    env = {**os.environ, "GENRE_FAULT_FILE": str(armed)}
    first = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lake")], env=env, cwd=ROOT)
    assert first.returncode == -9 and not armed.exists() and (tmp_path / "fault.fired").exists()
    assert Lake(str(tmp_path / "lake")).committed("evaluation") == []
    again = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lake")], env=env, cwd=ROOT)
    assert again.returncode == 0 and Lake(str(tmp_path / "lake")).committed("evaluation") == ["2026-11-22"]
