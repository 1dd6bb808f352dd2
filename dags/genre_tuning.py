"""genre_tuning: an Optuna study (TPE or random search) over the profile's `tuning.space`, on a
validation split carved from a committed night's training split; the best trial scored on test
once; one MLflow parent run per study (experiment `genre-tuning`) with a nested run per trial, the
best profile as YAML and its diff. With `promote`, the best profile becomes
`configs/tuned/<profile>-<date>.yaml`, which genre_nightly's form then offers: nothing that runs
tonight changes unless someone picks it.

Wiring only: `check` refuses bad form values by name before any trial starts; `tune` runs
jobs/tune.py (genre_lib/evaluation/tuning.py). A retry resumes the study from its Optuna storage.
"""
from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, task

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from genre_lib.orchestration import dag_support as support  # noqa: E402
from genre_lib.orchestration.forms import tuning_params  # noqa: E402

PYTHON = sys.executable


@dag(
    dag_id="genre_tuning",
    schedule=None,  # manual: a study is a decision, not a nightly chore
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,  # two runs of one study would race for its trials
    default_args={**support.default_args(), "retries": 1},
    params=tuning_params(),
    tags=["genre", "tuning"],
    doc_md=__doc__,
)
def genre_tuning():
    @task(retries=0, execution_timeout=support.timeout("resolve_run"))
    def check(params=None, run_id=None) -> dict:
        from genre_lib.evaluation.tuning import resolve

        return resolve(dict(params), run_id)

    tune = BashOperator(task_id="tune", cwd=str(REPO), execution_timeout=support.timeout("tune"),
                        bash_command=f"{PYTHON} {REPO / 'jobs' / 'tune.py'} "
                                     "{{ ti.xcom_pull(task_ids='check')['argline'] }}")
    check() >> tune


genre_tuning()
