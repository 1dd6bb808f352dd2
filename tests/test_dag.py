"""The DAGs import cleanly and are wired as designed (assets, pools, timeouts, callbacks, the trigger
form); one real `airflow dags test` run on tiny synthetic data commits every declared table, emits
an asset event per table, leaves the MLflow parent run with a child run per stage that logged its input
partitions and the HTML report, and makes the scheduler run the consumer DAG for that night; a
stage forced to fail leaves `failed_task` on the parent run and reaches the notifier connection."""
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.airflow_cluster import (
    Cluster,
    JsonInbox,
    airflow,
    airflow_env,
    generate,
    overrides,
    prepare,
    sql,
    xcom_value,
)

ROOT = Path(__file__).resolve().parent.parent
D = "2026-11-22"


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    os.environ.update({k: v for k, v in airflow_env(tmp_path_factory.mktemp("af")).items() if k.startswith("AIRFLOW")})
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def dag(bag):
    return bag.dags["genre_nightly"]


def test_dag_wiring(dag):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from genre_lib.lake.tables import STAGES

    # one task per stage declared in tables.py, each running the job of the same name
    assert STAGES == ["clean_interactions", "check_inputs", "genre_weights", "embed_texts", "train_classifier",
                      "recommend", "check_outputs", "evaluate", "publish"]
    assert set(dag.task_ids) == {"resolve_run", *STAGES, "maintain", "finish_run"}
    assert all(Path(ROOT / "jobs" / f"{s}.py").is_file() for s in STAGES)
    spark_stages = {t.task_id for t in dag.tasks if isinstance(t, SparkSubmitOperator)}
    assert spark_stages == {"clean_interactions", "genre_weights", "recommend", "evaluate"}
    assert all(dag.get_task(t).retries >= 1 for t in STAGES)
    assert dag.get_task("resolve_run").retries == 0
    # edges from the declared reads, without those implied by another (genre_weights runs before train_classifier)
    assert dag.get_task("recommend").upstream_task_ids == {"train_classifier"}
    assert dag.get_task("genre_weights").upstream_task_ids == {"clean_interactions"}
    assert dag.get_task("clean_interactions").upstream_task_ids == {"resolve_run"}
    assert dag.get_task("train_classifier").upstream_task_ids == {"genre_weights", "embed_texts"}
    assert dag.get_task("publish").upstream_task_ids == {"evaluate"}
    assert dag.get_task("evaluate").upstream_task_ids == {"check_inputs", "check_outputs"}  # its report reads them
    assert dag.get_task("check_inputs").upstream_task_ids == {"clean_interactions"}
    assert dag.get_task("check_outputs").upstream_task_ids == {"recommend"}
    assert dag.get_task("maintain").upstream_task_ids == {"publish"}
    assert dag.get_task("finish_run").upstream_task_ids == {"maintain"}
    assert {"run_date", "config", "overrides"} <= set(dag.params.keys())
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"  # nightly, run date = logical date
    # a run for a historical night (MovieLens: 1997-98) must get task instances
    assert dag.start_date.year <= 1995 and not dag.catchup


def test_dag_structure(bag, dag):
    """Assets from tables.TABLES on the task that commits each table; pools by kind of job; a
    timeout, the failure callback and a doc on every task; retries with backoff on the stages."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from genre_lib.lake.tables import STAGE_SPECS, STAGES, TABLES
    from genre_lib.orchestration import dag_support as support
    from genre_lib.orchestration.failures import on_task_failure

    assert dag.dagrun_timeout is not None and dag.max_active_runs == 1
    published = {}
    for t in dag.tasks:
        assert t.execution_timeout is not None and t.execution_timeout <= dag.dagrun_timeout, t.task_id
        assert on_task_failure in t.on_failure_callback, t.task_id
        assert t.doc_md and "Reads" in t.doc_md and "Writes" in t.doc_md, t.task_id
        for asset in t.outlets:
            assert asset.uri not in published, asset.uri
            published[asset.uri] = t.task_id
    assert published == {f"genre://lake/{name}": table.stage for name, table in TABLES.items()}
    for stage in STAGES:
        t = dag.get_task(stage)
        kind = "spark" if isinstance(t, SparkSubmitOperator) else \
            "gpu" if stage in ("embed_texts", "train_classifier") else "default_pool"  # torch: the accelerator
        assert t.pool == kind, stage
        assert t.retries >= 1 and t.retry_exponential_backoff > 1 and t.max_retry_delay is not None, stage
        assert t.trigger_rule == "none_failed", stage  # a skipped (unselected) upstream must not skip it
        assert all(f"`<lake.root>/{name}/" in t.doc_md for name, tb in TABLES.items() if tb.stage == stage), stage
        assert t.queue == "default", stage  # GENRE_TORCH_QUEUE unset: every task on the default queue
        assert sorted(t.upstream_task_ids) == sorted(STAGE_SPECS[stage].upstream or ["resolve_run"]), stage
    assert set(support.POOLS) == {"spark", "gpu"}
    # the consumer is scheduled on the recommendations asset
    consumer = bag.dags["genre_consumer"]
    assert [a.uri for a in consumer.timetable.asset_condition.objects] == ["genre://lake/recommendations"]
    assert all(t.execution_timeout is not None for t in consumer.tasks) and consumer.dagrun_timeout is not None


def test_torch_stages_go_to_the_gpu_queue_when_the_deployment_names_it(bag, monkeypatch):
    """Under Celery, GENRE_TORCH_QUEUE=gpu sends the torch stages to the GPU workers' queue
    (docker/compose.yaml's airflow-worker-gpu) and leaves every other task on the default queue."""
    from airflow.dag_processing.dagbag import DagBag

    from genre_lib.lake.tables import STAGE_SPECS

    monkeypatch.setenv("GENRE_TORCH_QUEUE", "gpu")
    dag = DagBag(str(ROOT / "dags")).dags["genre_nightly"]
    queues = {t.task_id: t.queue for t in dag.tasks}
    assert {s for s, q in queues.items() if q == "gpu"} == {s for s, spec in STAGE_SPECS.items() if spec.runs == "torch"}
    assert {q for s, q in queues.items() if q != "gpu"} == {"default"}


def test_trigger_form_schema(dag):
    from genre_lib.lake.tables import STAGES
    from genre_lib.orchestration.pipeline import profile_choices

    schema = {k: dag.params.get_param(k).schema for k in dag.params.keys()}
    assert set(schema) == {"run_date", "config", "overrides", "stages", "full_refresh"}
    assert schema["config"]["enum"] == profile_choices() and "configs/default.yaml" in profile_choices()
    assert all(Path(ROOT / p).is_file() and p.endswith(".yaml") for p in profile_choices())
    assert schema["run_date"]["format"] == "date" and "null" in schema["run_date"]["type"]
    assert schema["stages"]["type"] == "array" and schema["stages"]["items"]["enum"] == STAGES
    assert schema["stages"]["examples"] == STAGES  # the form's multi-select options
    assert schema["full_refresh"]["type"] == "boolean"
    assert dag.params.dump() == {"run_date": None, "config": "configs/default.yaml", "overrides": [],
                                 "stages": STAGES, "full_refresh": False}


BAD_FORM = [("run_date", "2026-02-30"), ("run_date", "22/11/2026"), ("config", "configs/missing.yaml"),
            ("config", "/etc/passwd"), ("stages", ["nope"]), ("stages", []), ("stages", "recommend"),
            ("full_refresh", "yes")]


@pytest.mark.parametrize("field, value", BAD_FORM)
def test_bad_form_values_refused_by_form_and_resolve_run(dag, field, value):
    from airflow.sdk.exceptions import ParamValidationError

    from genre_lib.config.settings import ConfigError
    from genre_lib.orchestration.pipeline import resolve_run

    with pytest.raises(ParamValidationError):
        dag.params.get_param(field).resolve(value)
    good = {"config": "configs/default.yaml", "run_date": D, "overrides": []}
    with pytest.raises(ConfigError, match=field):
        resolve_run({**good, field: value}, "manual__form")


def test_resolve_run_stages_and_full_refresh(tmp_path, monkeypatch, mlflow_uri):
    from genre_lib.orchestration.pipeline import resolve_run

    monkeypatch.setenv("GENRE_ALLOWED_ROOTS", str(tmp_path))
    (tmp_path / "data").mkdir()
    params = {"config": "configs/default.yaml", "run_date": None, "stages": ["evaluate", "recommend"],
              "full_refresh": True, "overrides": [f"lake.root={tmp_path}/lake", f"data.path={tmp_path}/data"]}
    import datetime as dt

    out = resolve_run(params, "manual__tail", dt.datetime(2026, 11, 21, 2))
    assert out["run_date"] == "2026-11-21"  # empty run_date: the logical date
    assert out["stages"] == ["recommend", "evaluate"]  # pipeline order
    assert out["args"][-2:] == ["--set", "encoder.full_refresh=true"]


def _mlflow_runs(uri: str):
    os.environ["MLFLOW_TRACKING_URI"] = uri
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=["genre-nightly"], output_format="list")


def test_end_to_end_dag_run(tmp_path):
    env = airflow_env(tmp_path)
    ovr = overrides(tmp_path)
    generate(tmp_path, env)
    prepare(env, unpause=("genre_consumer",), pools=False)  # genre_nightly stays paused: no cron run
    conf = json.dumps({"config": "configs/default.yaml", "run_date": D, "overrides": ovr})
    run = subprocess.run(["airflow", "dags", "test", "genre_nightly", D, "-c", conf], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log, log[-5000:]

    from genre_lib.config.settings import load_config
    from genre_lib.lake.storage import SUCCESS, Lake
    from genre_lib.lake.tables import STAGE_SPECS, STAGES, TABLES
    from genre_lib.orchestration.tracking import child_runs

    lake = Lake(str(tmp_path / "lake"))
    run_id = None
    for table in TABLES:
        assert D in lake.committed(table), table
        man = lake.manifest(table, D)
        assert {"row_count", "schema_version", "run_id", "config_hash"} <= set(man)
        assert man["run_id"].startswith("manual__")
        run_id = man["run_id"]
    assert lake.manifest("recommendations", D)["row_count"] > 0

    # one asset event per table, from the task that committed it, naming the partition
    events = sql(env, "SELECT a.uri, e.source_task_id, e.source_run_id, e.extra FROM asset_event e "
                      "JOIN asset a ON a.id = e.asset_id")
    assert sorted(e[0] for e in events) == sorted(f"genre://lake/{t}" for t in TABLES)
    for uri, task_id, source_run, extra in events:
        table, extra = uri.rsplit("/", 1)[1], json.loads(extra)
        assert task_id == TABLES[table].stage and source_run == run_id
        assert extra["ds"] == D and extra["run_id"] == run_id
        assert extra["rows"] == lake.manifest(table, D)["row_count"]
        assert extra["path"] == f"{tmp_path}/lake/{table}/ds={D}"

    cfg = load_config("configs/default.yaml", ovr)
    runs = _mlflow_runs(env["MLFLOW_TRACKING_URI"])
    parents = [r for r in runs if r.data.tags.get("stage") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["airflow_dag_id"] == "genre_nightly"
    assert parents[0].data.tags["airflow_run_id"] == run_id
    children = {r.data.tags["stage"]: r for r in child_runs(cfg, run_id)}
    assert sorted(children) == sorted(STAGES)
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children.values())
    assert all(r.info.status == "FINISHED" for r in children.values())

    # every stage logged the partitions it read: declared inputs only, digest = its manifest's hash
    for stage, child in children.items():
        seen = set()
        for inp in child.inputs.dataset_inputs:
            tags = {t.key: t.value for t in inp.tags}
            table, ds = tags["table"], tags["ds"]
            assert table in STAGE_SPECS[stage].reads, (stage, table)
            manifest = Path(lake.partition(table, ds)) / SUCCESS
            digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
            assert tags["manifest_sha256"] == digest and inp.dataset.digest == digest[:36]
            assert json.loads(inp.dataset.source)["uri"] == lake.uri(table, f"ds={ds}")
            assert tags["mlflow.data.context"] == "input"
            seen.add((table, ds))
        if stage not in ("clean_interactions", "publish"):  # clean reads raw files; publish, Parquet directly
            assert seen, stage
    assert f"item_embeddings/ds={D}" in {i.dataset.name for i in children["train_classifier"].inputs.dataset_inputs}
    assert {f"interactions_clean/ds={d}" for d in ("2026-11-20", "2026-11-21", D)} <= \
        {i.dataset.name for i in children["recommend"].inputs.dataset_inputs}

    # the evaluation's HTML report and its metric keys
    import mlflow

    from genre_lib.evaluation.html_report import metric_keys

    ev = children["evaluate"]
    report = Path(mlflow.artifacts.download_artifacts(run_id=ev.info.run_id, artifact_path="report.html",
                                                      dst_path=str(tmp_path / "art"))).read_text()
    payload = lake.read_json("evaluation", D, "metrics.json")
    recs = lake.read_pandas("recommendations", D)
    per_user = recs.groupby("user_id").size()
    assert "Metrics per model" in report and "id='genre-mix'" in report and "<svg" in report
    assert all(f"<td>{name}</td>" in report for name in payload["models"])
    lo, hi = per_user.min(), per_user.max()
    assert f"{len(recs)} rows for {len(per_user)} users; rows per user: min {lo}, max {hi}" in report
    assert set(metric_keys(payload)) <= set(ev.data.metrics)

    # the scheduler turns the recommendations asset event into a genre_consumer run for this night
    cluster = Cluster(env, tmp_path / "logs").start("api-server", "scheduler")
    try:
        consumer_runs = cluster.wait_runs("genre_consumer", 1, 300)
    finally:
        cluster.stop()
    assert [(r[1], r[5]) for r in consumer_runs] == [("success", "asset_triggered")]
    night = xcom_value(env, "genre_consumer", consumer_runs[0][0], "read_night")
    assert night["ds"] == D and night["run_id"] == run_id and night["source_run_id"] == run_id
    assert night["rows"] == len(recs) and night["path"] == f"{tmp_path}/lake/recommendations/ds={D}"


def test_failed_stage_recorded_on_parent_run(tmp_path):
    """Only embed_texts selected, slow past the night's deadline and then forced to fail
    (GENRE_FAIL_STAGE), run by the real scheduler with a triggerer (so the task log is a file and the
    Deadline Alert fires): clean and genre_weights are skipped, embed_texts still runs (a skipped
    upstream does not skip it) and fails; its failure callback tags the parent run and attaches the
    end of the task log; later stages never run. The webhook receives exactly two alerts: the missed
    deadline while the night ran, and the night's verdict naming the failed task and its error."""
    inbox = JsonInbox()
    env = airflow_env(tmp_path, GENRE_FAIL_STAGE=f"embed_texts:sleep-60@{D},embed_texts@{D}", GENRE_TASK_RETRIES="0",
                      GENRE_NOTIFIER_CONN="genre_notify", AIRFLOW_CONN_GENRE_NOTIFY=inbox.connection(),
                      GENRE_DEADLINE_MIN="0.5", AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False")  # no cron run
    (tmp_path / "data").mkdir()  # resolve_run checks it exists; the failing stage reads nothing
    prepare(env, unpause=("genre_nightly",))
    conf = json.dumps({"config": "configs/default.yaml", "run_date": D, "overrides": overrides(tmp_path),
                       "stages": ["embed_texts"]})
    cluster = Cluster(env, tmp_path / "logs").start("api-server", "scheduler", "triggerer")
    try:
        airflow(env, "dags", "trigger", "genre_nightly", "--run-id", "manual__failtest", "--conf", conf)
        (run,) = cluster.wait_runs("genre_nightly", 1, 400)
        time.sleep(10)  # a second deadline alert, were there one, would come now
    finally:
        cluster.stop()
        inbox.stop()
    assert run[:2] == ("manual__failtest", "failed")
    states = dict(sql(env, "SELECT task_id, state FROM task_instance WHERE dag_id='genre_nightly'"))
    assert states == {"resolve_run": "success", "clean_interactions": "skipped", "check_inputs": "skipped",
                      "genre_weights": "skipped", "embed_texts": "failed", "train_classifier": "upstream_failed",
                      "recommend": "upstream_failed", "check_outputs": "upstream_failed",
                      "evaluate": "upstream_failed", "publish": "upstream_failed", "maintain": "success",
                      "finish_run": "failed"}, states

    runs = _mlflow_runs(env["MLFLOW_TRACKING_URI"])
    parent = next(r for r in runs if r.data.tags.get("stage") == "pipeline")
    assert parent.data.tags["failed_task"] == "embed_texts" and parent.info.status == "FAILED"
    assert parent.data.tags["failed_tasks"] == "embed_texts,finish_run"  # finish_run fails after it
    assert parent.data.tags["stages_selected"] == "embed_texts" and parent.data.tags["outcome"] == "failed"
    import mlflow

    text = Path(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id,
                                                    artifact_path="failures/embed_texts.try1.log",
                                                    dst_path=str(tmp_path / "art"))).read_text()
    assert "task embed_texts, try 1" in text and "attempt=1.log" in text
    # the job's own error, as the task log has it (its stderr), not only the operator's exception
    assert f"GENRE_FAIL_STAGE=embed_texts@{D}: embed_texts {D} fails on request" in text
    child = next(r for r in runs if r.data.tags.get("stage") == "embed_texts")
    assert child.info.status == "FAILED"
    deadline, verdict = inbox.received
    assert (deadline["outcome"], deadline["run_id"]) == ("failed", "manual__failtest")
    assert "not done 0.5 minutes after it was queued" in deadline["text"]
    assert verdict["subject"] == f"genre genre_nightly night {D}: failed (embed_texts)"
    assert f"embed_texts {D} fails on request" in verdict["text"] and "/dags/genre_nightly/runs/" in verdict["text"]