"""The DAG imports cleanly, is wired as designed, and one real `airflow dags test` run on tiny
synthetic data commits all eight tables and leaves the MLflow parent run with six child runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
D = "2026-11-22"


def airflow_env(tmp_path):
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow/airflow.db",
            "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "PYSPARK_PYTHON": sys.executable,
            "GENRE_ALLOWED_ROOTS": str(tmp_path)}


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    os.environ.update({k: v for k, v in airflow_env(tmp_path_factory.mktemp("af")).items() if k.startswith("AIRFLOW")})
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["genre_nightly"]


def test_dag_wiring(dag):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    assert set(dag.task_ids) == {"resolve_run", "clean_interactions", "genre_weights", "embed_texts",
                                 "train_classifier", "recommend", "evaluate", "finish_run"}
    spark_stages = {t.task_id for t in dag.tasks if isinstance(t, SparkSubmitOperator)}
    assert spark_stages == {"clean_interactions", "genre_weights", "recommend", "evaluate"}
    assert all(dag.get_task(t).retries >= 1 for t in spark_stages | {"embed_texts", "train_classifier"})
    assert dag.get_task("resolve_run").retries == 0
    assert dag.get_task("recommend").upstream_task_ids == {"genre_weights", "train_classifier"}
    assert dag.get_task("train_classifier").upstream_task_ids == {"genre_weights", "embed_texts"}
    assert {"run_date", "config", "overrides"} <= set(dag.params.keys())
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"  # nightly, run date = logical date
    # a run for a historical night (MovieLens: 1997-98) must get task instances
    assert dag.start_date.year <= 1995 and not dag.catchup


TINY = ["data.synthetic.users=40", "data.synthetic.items=60", "data.synthetic.interactions=1500",
        "data.synthetic.days=3", "spark.shuffle_partitions=2", "classifier.epochs=5", "encoder.max_length=32"]


def test_end_to_end_dag_run(tmp_path):
    env = airflow_env(tmp_path)
    overrides = [f"lake.root={tmp_path}/lake", f"data.path={tmp_path}/data", *TINY]
    sets = [a for o in overrides for a in ("--set", o)]
    subprocess.run([sys.executable, "-m", "genre_lib.datasets", *sets], cwd=ROOT, env=env, check=True)
    subprocess.run(["airflow", "db", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    conf = json.dumps({"config": "configs/default.yaml", "run_date": D, "overrides": overrides})
    run = subprocess.run(["airflow", "dags", "test", "genre_nightly", D, "-c", conf], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log, log[-5000:]

    from genre_lib.config import load_config
    from genre_lib.tables import TABLES, Lake
    from genre_lib.tracking import child_runs

    lake = Lake(str(tmp_path / "lake"))
    for table in TABLES:
        assert D in lake.committed(table), table
        man = lake.manifest(table, D)
        assert {"row_count", "schema_version", "run_id", "config_hash"} <= set(man)
        assert man["run_id"].startswith("manual__")
    assert lake.manifest("recommendations", D)["row_count"] > 0

    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    import mlflow

    cfg = load_config("configs/default.yaml", overrides)
    runs = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list")
    parents = [r for r in runs if r.data.tags.get("stage") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["airflow_dag_id"] == "genre_nightly"
    run_id = parents[0].data.tags["airflow_run_id"]
    children = child_runs(cfg, run_id)
    assert sorted(r.data.tags["stage"] for r in children) == sorted(
        ["clean_interactions", "genre_weights", "embed_texts", "train_classifier", "recommend", "evaluate"])
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in children)
