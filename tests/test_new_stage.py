"""What adding a stage touches: its declaration (a Table and a Stage in genre_lib/lake/tables.py), its
module (genre_lib/stages/<name>.py, `run(ctx) -> metrics`), its job shim (jobs/<name>.py, calling
jobrun.main("<name>", argv)) and its tests; nothing else. Here a `genre_mix` stage (the genre mix of
tonight's recommendations) is declared; the DAG gets its task, its edges, its pool and its doc, and the
job runner runs its module, from the declaration alone."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from genre_lib.lake import tables
from genre_lib.lake.storage import Lake
from genre_lib.orchestration import jobrun
from tests.airflow_cluster import airflow_env

ROOT = Path(__file__).resolve().parent.parent
D = "2026-11-22"
MIX = tables.Table("genre_mix", "genre_mix", 1, pa.schema([("genre", pa.string()), ("share", pa.float64())]))
SPEC = tables.Stage("genre_mix", "recommendations + item_genres -> genre_mix, the genre shares of tonight's lists",
                    ("recommendations", "item_genres"), "python", 10)


def run(ctx) -> dict:  # what genre_lib/stages/genre_mix.py would hold
    recs = ctx.lake.read_pandas("recommendations", ctx.ds, columns=["item_id"])
    genres = ctx.lake.read_pandas("item_genres", ctx.ds)
    mix = recs.merge(genres, on="item_id").groupby("genre")["score"].sum()
    frame = (mix / mix.sum()).rename("share").reset_index()
    ctx.lake.write_pandas("genre_mix", ctx.ds, frame, ctx.manifest())
    return {"genres": len(frame)}


@pytest.fixture
def declared(monkeypatch):
    """The two declarations, added the way an edit of tables.py adds them (at the end, in order)."""
    monkeypatch.setitem(tables.TABLES, "genre_mix", MIX)
    monkeypatch.setitem(tables.STAGE_SPECS, "genre_mix", SPEC)
    tables.STAGES.append("genre_mix")
    module = types.ModuleType("genre_lib.stages.genre_mix")
    module.run = run
    monkeypatch.setitem(sys.modules, "genre_lib.stages.genre_mix", module)
    try:
        yield
    finally:
        tables.STAGES.remove("genre_mix")


def test_the_dag_derives_the_new_stage(declared, tmp_path, monkeypatch):
    for k, v in airflow_env(tmp_path).items():
        if k.startswith("AIRFLOW"):
            monkeypatch.setenv(k, v)
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(ROOT / "dags")).dags["genre_nightly"]
    task = dag.get_task("genre_mix")
    assert task.upstream_task_ids == {"recommend"}  # item_genres' writer runs before recommend already
    assert task.pool == "default_pool" and task.bash_command.split()[1].endswith("jobs/genre_mix.py")
    assert "`<lake.root>/genre_mix/ds=<run_date>/`" in task.doc_md and "`recommendations`" in task.doc_md
    assert [a.uri for a in task.outlets] == ["genre://lake/genre_mix"]
    # both end the night: maintenance follows them, then the verdict
    assert dag.get_task("maintain").upstream_task_ids == {"publish", "genre_mix"}
    assert dag.get_task("finish_run").upstream_task_ids == {"maintain"}


def test_the_job_runner_runs_the_declared_module(declared, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    man = {"run_id": "r", "config_hash": "h"}
    recs = pd.DataFrame({c: [None, None] for c in tables.schema("recommendations").names})
    recs = recs.assign(user_id="u1", rank=[1, 2], item_id=["i1", "i2"], score=1.0)
    lake.write_pandas("recommendations", D, recs, man)
    lake.write_pandas("item_genres", D, pd.DataFrame({"item_id": ["i1", "i2", "i2"], "genre": ["Drama", "Drama", "Horror"],
                                                      "score": [1.0, 0.5, 0.5]}), man)
    assert jobrun.main("genre_mix", ["--run-date", D, "--set", f"lake.root={lake.root}"]) == 0
    mix = lake.read_pandas("genre_mix", D).set_index("genre")["share"]
    assert mix.to_dict() == {"Drama": 0.75, "Horror": 0.25}
