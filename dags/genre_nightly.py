"""genre_nightly: raw logs -> clean -> genre weights -> embeddings -> classifier -> top-N -> evaluation
-> publish.

Wiring only: each task runs one job from jobs/ (Spark stages through spark-submit on the
`spark_default` connection in the `spark` pool, torch stages as plain Python in the `gpu` pool,
publish as plain Python);
the work lives in genre_lib, the task settings in genre_lib/dag_support.py. Each table a stage
commits is an Asset (`genre://lake/<table>`) whose events carry the partition in their extra.
"""
from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import CronDataIntervalTimetable, dag, task

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from genre_lib import dag_support as support  # noqa: E402
from genre_lib.spark import SUBMIT_CONF  # noqa: E402

JOBS = REPO / "jobs"
PYTHON = sys.executable  # the venv Airflow runs in; Spark's Python workers must use it too
ARGS = "{{ ti.xcom_pull(task_ids='resolve_run')['args'] }}"
ARGLINE = "{{ ti.xcom_pull(task_ids='resolve_run')['argline'] }}"


def spark_job(name: str) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=name, application=str(JOBS / f"{name}.py"), application_args=ARGS,
        conn_id="spark_default", name=f"genre-{name}", conf=dict(SUBMIT_CONF),
        env_vars={"PYSPARK_PYTHON": PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON},
        **support.stage_task(name, pool=support.SPARK_POOL))


def python_job(name: str, pool: str = "default_pool") -> BashOperator:
    return BashOperator(task_id=name, bash_command=f"{PYTHON} {JOBS / name}.py {ARGLINE}", cwd=str(REPO),
                        **support.stage_task(name, pool=pool))


def torch_job(name: str) -> BashOperator:
    return python_job(name, pool=support.GPU_POOL)


@dag(
    dag_id="genre_nightly",
    # the run for night D starts after D ends; its logical date (the run date) is D
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    # early enough for historical data sets (MovieLens starts in 1995): a logical date before
    # start_date would give a run with no task instances; catchup is off, so no backfill storm
    start_date=datetime(1995, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=support.dagrun_timeout(),
    render_template_as_native_obj=True,  # ARGS renders to the list spark-submit gets
    default_args=support.default_args(),  # retries with backoff, timeout, on_failure_callback
    params=support.nightly_params(),
    tags=["genre", "nightly"],
    doc_md=__doc__,
)
def genre_nightly():
    # bad parameters are refused here, before Spark or torch start
    @task(retries=0, execution_timeout=support.timeout("resolve_run"), doc_md=support.task_doc("resolve_run"))
    def resolve_run(params=None, run_id=None, logical_date=None) -> dict:
        from genre_lib.pipeline import resolve_run as resolve

        return resolve(dict(params), run_id, logical_date)

    @task(trigger_rule="all_done", retries=0, execution_timeout=support.timeout("finish_run"),
          doc_md=support.task_doc("finish_run"))
    def finish_run(params=None, run_id=None, ti=None) -> str:
        from genre_lib.pipeline import finish_run as finish

        resolved = ti.xcom_pull(task_ids="resolve_run") or {}
        return finish(dict(params), run_id, resolved.get("stages"), resolved.get("overrides"))

    clean = spark_job("clean_interactions")
    weights = spark_job("genre_weights")
    embed = torch_job("embed_texts")
    train = torch_job("train_classifier")
    recommend = spark_job("recommend")
    evaluate = spark_job("evaluate")
    publish = python_job("publish")  # the quality gate, then the serving store

    resolve_run() >> clean >> [weights, embed]
    [weights, embed] >> train  # train reads the night's genre_vocab, which weights writes
    [weights, train] >> recommend >> evaluate >> publish >> finish_run()


genre_nightly()
