"""The maintenance step (genre_lib/orchestration/maintenance.py): expired lake partitions go and the
served night stays whatever its age; MLflow runs past their age are deleted and garbage-collected,
except those behind kept model versions; registered versions beyond K go, never the champion; a dry
run lists everything and removes nothing; `airflow db clean` trims Airflow's metadata."""
import datetime as dt
import logging
import sqlite3
import subprocess
import time

import pandas as pd
import pytest
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient

from genre_lib.config.settings import load_config
from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import TABLES
from genre_lib.orchestration import maintenance
from genre_lib.orchestration.tracking import experiment_id
from genre_lib.serve.store import store_for
from genre_lib.stages.publish import publish
from tests.airflow_cluster import airflow_env

M = {"run_id": "r1", "config_hash": "h"}
DAY = dt.date(2026, 11, 1)
KEEP = TABLES["recommendations"].keep_nights
DAY_S = 86_400


def night(k: int) -> str:
    return str(DAY + dt.timedelta(days=k))


def recs(n=3) -> pd.DataFrame:
    f = pd.DataFrame({c: [None] * n for c in TABLES["recommendations"].schema.names})
    f["user_id"], f["rank"], f["item_id"], f["score"], f["reason"] = "u", range(1, n + 1), [f"i{k}" for k in range(n)], 1.0, "r"
    return f


class _Quiet:
    def send(self, event):
        pass


@pytest.fixture()
def setup(tmp_path, mlflow_uri):
    cfg = load_config("configs/default.yaml", [f"lake.root={tmp_path / 'lake'}", f"mlflow.tracking_uri={mlflow_uri}",
                                               f"publish.sqlite_path={tmp_path / 'serving.db'}",
                                               "maintenance.registry_keep=2", "maintenance.mlflow_keep_days=30"])
    lake = Lake(cfg.lake_root)
    n = KEEP + 5
    for k in range(n):
        lake.write_pandas("recommendations", night(k), recs(), M)
    store = store_for(cfg)
    publish(lake, night(0), "r0", store, _Quiet())  # the served night is the oldest: the gate kept refusing
    store.close()
    return cfg, lake, n


def model_versions(client, name, n):
    """n versions, each of its own run and logged model (MLflow 3 keeps logged models apart from runs)."""
    client.create_registered_model(name)
    exp = experiment_id(load_config("configs/default.yaml"))
    for _ in range(n):
        run = client.create_run(exp)
        model = client.create_logged_model(exp, name=name, source_run_id=run.info.run_id)
        client.create_model_version(name, source=f"models:/{model.model_id}", run_id=run.info.run_id,
                                    model_id=model.model_id)


def test_lake_keeps_the_served_night_and_the_newest(setup):
    cfg, lake, n = setup
    report = maintenance.maintain(cfg, night(n - 1), airflow_db=False)
    kept = lake.committed("recommendations")
    assert kept == [night(0), *[night(k) for k in range(n - KEEP, n)]], kept
    assert {r["what"] for r in report["lake"]} == {f"lake recommendations ds={night(k)}" for k in range(1, n - KEEP)}
    assert all("newest 7 committed nights" in r["why"] for r in report["lake"])


def test_keep_nights_override(setup, tmp_path):
    cfg, lake, n = setup
    short = load_config("configs/default.yaml", [f"lake.root={cfg.lake_root}", f"publish.sqlite_path={tmp_path / 'serving.db'}",
                                                 "maintenance.keep_nights={recommendations: 2}"])
    maintenance.maintain(short, night(n - 1), airflow_db=False)
    assert lake.committed("recommendations") == [night(0), night(n - 2), night(n - 1)]
    from genre_lib.config.settings import ConfigError
    from genre_lib.orchestration.pipeline import preflight

    for bad in ("{interactions_clean: 3}", "{item_embeddings: 1}", "{nope: 3}"):
        with pytest.raises(ConfigError, match="maintenance.keep_nights"):
            preflight(load_config("configs/default.yaml", [f"maintenance.keep_nights={bad}", "data.path=."]),
                      "recommend")


def test_dry_run_lists_and_removes_nothing(setup, caplog):
    cfg, lake, n = setup
    client = MlflowClient()
    model_versions(client, "genre-classifier", 4)
    before = lake.committed("recommendations")
    with caplog.at_level(logging.INFO, logger="genre.maintenance"):
        report = maintenance.maintain(cfg, night(n - 1), dry_run=True, airflow_db=False)
    assert report["dry_run"] and len(report["lake"]) == n - KEEP - 1 and len(report["registry"]) == 2
    assert lake.committed("recommendations") == before
    assert len(client.search_model_versions("name='genre-classifier'")) == 4
    assert "maintenance (dry run): model genre-classifier version 1" in caplog.text


def test_registry_keeps_k_newest_and_the_champion(setup):
    cfg, lake, n = setup
    client = MlflowClient()
    model_versions(client, "genre-classifier", 5)
    model_versions(client, "genre-reranker", 3)
    client.set_registered_model_alias("genre-classifier", "champion", "1")  # the oldest holds the alias
    report = maintenance.maintain(cfg, night(n - 1), airflow_db=False)
    left = sorted(int(v.version) for v in client.search_model_versions("name='genre-classifier'"))
    assert left == [1, 4, 5]
    assert sorted(int(v.version) for v in client.search_model_versions("name='genre-reranker'")) == [2, 3]
    assert {r["what"] for r in report["registry"]} == {"model genre-classifier version 2",
                                                       "model genre-classifier version 3",
                                                       "model genre-reranker version 1"}
    # the logged models of the versions that went go too; those of the kept ones stay
    kept = {maintenance._model_id(v) for n in ("genre-classifier", "genre-reranker")
            for v in client.search_model_versions(f"name='{n}'")}
    left = {m.model_id for m in client.search_logged_models([experiment_id(cfg)])}
    assert left == kept and len(left) == 5
    assert sum("mlflow logged model" in r["what"] for r in report["mlflow"]) == 3


def test_old_mlflow_runs_are_deleted_and_collected(setup):
    cfg, lake, n = setup
    client = MlflowClient()
    exp = experiment_id(cfg)
    now = time.time()
    old = client.create_run(exp, start_time=int((now - 40 * DAY_S) * 1000), run_name="old night")
    client.log_text(old.info.run_id, "x", "report.txt")
    young = client.create_run(exp, start_time=int((now - 5 * DAY_S) * 1000), run_name="young night")
    # a replayed night: started just now, but its night is 60 days before tonight
    replay = client.create_run(exp, run_name="replayed night", tags={"run_date": night(n - 1 - 60)})
    recent = client.create_run(exp, start_time=int((now - 90 * DAY_S) * 1000), run_name="recent night",
                               tags={"run_date": night(n - 2)})
    trends = client.create_run(exp, start_time=int((now - 90 * DAY_S) * 1000), tags={"stage": "trends"})
    # as old, but it produced a model version that is kept: it stays
    behind = client.create_run(exp, start_time=int((now - 40 * DAY_S) * 1000), run_name="classifier training")
    client.create_registered_model("genre-classifier")
    client.create_model_version("genre-classifier", source="file:///nowhere", run_id=behind.info.run_id)
    for run in (old, young):  # the lake partitions each read, as jobrun logs them
        name = f"recommendations/ds={run.info.run_name}"
        client.log_inputs(run.info.run_id, [DatasetInput(Dataset(name, name[-30:], "local", "file:///lake"),
                                                         [InputTag("table", "recommendations")])])
    report = maintenance.maintain(cfg, night(n - 1), airflow_db=False, now=now)
    ids = {r.info.run_id for r in client.search_runs([exp], run_view_type=3)}  # ALL: deleted ones too
    assert old.info.run_id not in ids  # garbage-collected, not only marked deleted
    assert replay.info.run_id not in ids
    assert {young.info.run_id, behind.info.run_id, recent.info.run_id, trends.info.run_id} <= ids
    assert sorted(r["what"] for r in report["mlflow"]) == sorted([f"mlflow run {old.info.run_id} (old night)",
                                                                  f"mlflow run {replay.info.run_id} (replayed night)",
                                                                  "mlflow input links: 1, datasets: 1"])
    # gc leaves the input links of the runs it removed; maintenance takes them and their datasets
    with sqlite3.connect(cfg.mlflow.tracking_uri[len("sqlite:///"):]) as db:
        assert db.execute("SELECT destination_id FROM inputs").fetchall() == [(young.info.run_id,)]
        assert db.execute("SELECT name FROM datasets").fetchall() == [("recommendations/ds=young night",)]
        assert db.execute("SELECT count(*) FROM input_tags").fetchone() == (1,)


def test_airflow_db_clean_runs_against_the_metadata_db(tmp_path, monkeypatch):
    env = airflow_env(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    # what a task sees: Airflow 3 replaces the metadata DB's URL in a task's environment
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    out = maintenance.airflow_clean(30, dry_run=False, now=time.time())
    assert out and "older than airflow_keep_days 30" in out[0]["why"]
    # the running night is never cleaned, whatever the setting: the cut-off stops before it was queued
    from genre_lib.orchestration import maintenance as m

    ran = []
    monkeypatch.setattr(m.subprocess, "run", lambda cmd, **kw: ran.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    now = time.time()
    m.airflow_clean(0.001, dry_run=False, now=now, running_since=now - 3600)
    cutoff = dt.datetime.fromisoformat(ran[0][ran[0].index("--clean-before-timestamp") + 1]).timestamp()
    assert cutoff < now - 3600 - 0.9
    tables = ran[0][ran[0].index("--tables") + 1].split(",")
    assert "dag_run" in tables and "dag" not in tables and "dag_version" not in tables
    monkeypatch.undo()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("GENRE_AIRFLOW_DB_CONN", f"sqlite:///{tmp_path}/elsewhere/airflow.db")
    assert maintenance.airflow_clean(30, dry_run=False, now=time.time()) == []  # not another database
    monkeypatch.delenv("GENRE_AIRFLOW_DB_CONN")
    assert maintenance.airflow_clean(30, dry_run=False, now=time.time()) == []  # told in the log, not done
