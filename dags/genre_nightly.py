"""genre_nightly: raw logs -> clean -> genre weights -> embeddings -> classifier -> top-N -> evaluation
-> publish.

Wiring only: one task per stage declared in genre_lib/lake/tables.py (STAGE_SPECS), each running its
job from jobs/ (Spark stages through spark-submit on the `spark_default` connection, torch and Python
stages as plain Python), after the stages whose tables it reads. Each table a stage commits is an Asset
(`genre://lake/<table>`) whose events carry the partition in their extra.
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
from genre_lib.lake.spark import SUBMIT_CONF  # noqa: E402
from genre_lib.lake.tables import STAGE_SPECS  # noqa: E402
from genre_lib.orchestration import dag_support as support  # noqa: E402
from genre_lib.orchestration.forms import nightly_params  # noqa: E402

JOBS = REPO / "jobs"
PYTHON = sys.executable  # the venv Airflow runs in; Spark's Python workers must use it too
ARGS = "{{ ti.xcom_pull(task_ids='resolve_run')['args'] }}"
ARGLINE = "{{ ti.xcom_pull(task_ids='resolve_run')['argline'] }}"


def stage_operator(name: str):
    if STAGE_SPECS[name].runs == "spark":
        return SparkSubmitOperator(
            application=str(JOBS / f"{name}.py"), application_args=ARGS, conn_id="spark_default",
            name=f"genre-{name}", conf=dict(SUBMIT_CONF),
            env_vars={"PYSPARK_PYTHON": PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON}, **support.stage_task(name))
    return BashOperator(bash_command=f"{PYTHON} {JOBS / name}.py {ARGLINE}", cwd=str(REPO), **support.stage_task(name))


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
    deadline=support.deadline(),  # a night not done in time is told (GENRE_DEADLINE_MIN)
    render_template_as_native_obj=True,  # ARGS renders to the list spark-submit gets
    default_args=support.default_args(),  # retries with backoff, timeout, on_failure_callback
    params=nightly_params(),
    tags=["genre", "nightly"],
    doc_md=__doc__,
)
def genre_nightly():
    # bad parameters are refused here, before Spark or torch start
    @task(retries=0, execution_timeout=support.timeout("resolve_run"), doc_md=support.task_doc("resolve_run"))
    def resolve_run(params=None, run_id=None, logical_date=None) -> dict:
        from genre_lib.orchestration.pipeline import resolve_run as resolve

        return resolve(dict(params), run_id, logical_date)

    # after the night, whatever its outcome: expired lake partitions, MLflow runs and model versions,
    # Airflow metadata (the served night and tonight protected)
    @task(trigger_rule="all_done", retries=0, execution_timeout=support.timeout("maintain"),
          doc_md=support.task_doc("maintain"))
    def maintain(params=None, run_id=None, ti=None, dag_run=None) -> dict:
        from genre_lib.orchestration.maintenance import nightly_task

        since = getattr(dag_run, "start_date", None)  # the task SDK's DagRun has no queued_at
        return nightly_task(dict(params), ti.xcom_pull(task_ids="resolve_run") or {}, run_id,
                            since.timestamp() if since else None)

    # the night's verdict: the parent run closed, one alert when anything went wrong, red unless published
    @task(trigger_rule="all_done", retries=0, execution_timeout=support.timeout("finish_run"),
          doc_md=support.task_doc("finish_run"))
    def finish_run(params=None, run_id=None, ti=None, dag=None) -> str:
        from airflow.sdk import get_current_context

        from genre_lib.orchestration.alerts import finish_run as finish

        resolved = ti.xcom_pull(task_ids="resolve_run") or {}
        return finish(dict(params), run_id, resolved.get("stages"), resolved.get("overrides"),
                      resolved.get("run_date", ""), dag.dag_id, get_current_context())

    start, tidy, end = resolve_run(), maintain(), finish_run()
    stages = {name: stage_operator(name) for name in STAGE_SPECS}
    for name, spec in STAGE_SPECS.items():
        for up in spec.upstream:
            stages[up] >> stages[name]
        if not spec.upstream:
            start >> stages[name]
    # the night ends after every stage nothing else reads from (today publish: the gate, then serving)
    [stages[n] for n in STAGE_SPECS if not any(n in s.upstream for s in STAGE_SPECS.values())] >> tidy >> end


genre_nightly()
