"""genre_nightly: raw logs -> clean -> genre weights -> embeddings -> classifier -> top-N -> evaluation.

Wiring only: each task runs one job from jobs/ (Spark stages through spark-submit on the
`spark_default` connection, torch stages as plain Python); the work lives in genre_lib.
"""
from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

REPO = Path(__file__).resolve().parent.parent
JOBS = REPO / "jobs"
PYTHON = sys.executable  # the venv Airflow runs in; Spark's Python workers must use it too
ARGS = "{{ ti.xcom_pull(task_ids='resolve_run')['args'] }}"
ARGLINE = "{{ ti.xcom_pull(task_ids='resolve_run')['argline'] }}"


def spark_job(name: str) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=name, application=str(JOBS / f"{name}.py"), application_args=ARGS,
        conn_id="spark_default", name=f"genre-{name}", conf={"spark.log.level": "WARN"},
        env_vars={"PYSPARK_PYTHON": PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON})


def torch_job(name: str) -> BashOperator:
    return BashOperator(task_id=name, bash_command=f"{PYTHON} {JOBS / name}.py {ARGLINE}", cwd=str(REPO))


@dag(
    dag_id="genre_nightly",
    # the run for night D starts after D ends; its logical date (the run date) is D
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    # early enough for historical data sets (MovieLens starts in 1995): a logical date before
    # start_date would give a run with no task instances; catchup is off, so no backfill storm
    start_date=datetime(1995, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,  # ARGS renders to the list spark-submit gets
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "run_date": Param("", type="string", title="Run date (YYYY-MM-DD)",
                          description="Night to process; empty: the run's logical date."),
        "config": Param("configs/default.yaml", type="string", title="Config profile",
                        description="YAML profile, relative to the project root."),
        "overrides": Param([], type="array", items={"type": "string"}, title="Overrides",
                           description="dotted.key=value lines, e.g. recommend.top_n=50"),
    },
    tags=["genre", "nightly"],
    doc_md=__doc__,
)
def genre_nightly():
    @task(retries=0)  # bad parameters are refused here, before Spark or torch start
    def resolve_run(params=None, run_id=None, logical_date=None) -> dict:
        sys.path.insert(0, str(REPO))
        from genre_lib.pipeline import resolve_run as resolve

        return resolve(dict(params), run_id, logical_date)

    @task(trigger_rule="all_done", retries=0)
    def finish_run(params=None, run_id=None) -> str:
        sys.path.insert(0, str(REPO))
        from genre_lib.pipeline import finish_run as finish

        return finish(dict(params), run_id)

    clean = spark_job("clean_interactions")
    weights = spark_job("genre_weights")
    embed = torch_job("embed_texts")
    train = torch_job("train_classifier")
    recommend = spark_job("recommend")
    evaluate = spark_job("evaluate")

    resolve_run() >> clean >> [weights, embed]
    [weights, embed] >> train  # train reads the night's genre_vocab, which weights writes
    [weights, train] >> recommend >> evaluate >> finish_run()


genre_nightly()
