"""`airflow backfill create` over three consecutive nights of the tiny synthetic data, executed by a
real scheduler (Airflow 3 backfills are run by the scheduler, not the CLI) with the LocalExecutor on
SQLite: every night's partitions committed by its own run, the runs in date order, one at a time,
and the evaluation's metric keys the same every night. Slow (about 10 minutes on 2 cores)."""
import json
import os
from datetime import datetime

import pytest

from tests.airflow_cluster import Cluster, airflow, airflow_env, generate, overrides, prepare, sql

NIGHTS = ["2026-11-20", "2026-11-21", "2026-11-22"]  # the synthetic data's three days


@pytest.mark.slow
def test_backfill_three_nights(tmp_path):
    # genre_nightly must be unpaused for the scheduler to run backfill runs; the cron schedule is
    # switched off so that no scheduled full-size night joins them
    env = airflow_env(tmp_path, AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False")
    generate(tmp_path, env)
    prepare(env, unpause=("genre_nightly",))
    cluster = Cluster(env, tmp_path / "logs").start("api-server", "scheduler")
    try:
        # no run_date: each run's night is its logical date
        conf = json.dumps({"config": "configs/default.yaml", "overrides": overrides(tmp_path)})
        # the cron's logical dates are 02:00 UTC: the last night is only inside the window up to 02:00
        airflow(env, "backfill", "create", "--dag-id", "genre_nightly", "--from-date", NIGHTS[0],
                "--to-date", f"{NIGHTS[-1]}T02:00:00+00:00", "--max-active-runs", "1", "--dag-run-conf", conf)
        runs = cluster.wait_runs("genre_nightly", 3, 1800, run_type="backfill")
    finally:
        cluster.stop()

    assert [r[1] for r in runs] == ["success"] * 3, runs
    assert [r[2][:10] for r in runs] == NIGHTS
    # in order and never overlapping (max_active_runs=1): each starts after the previous ended
    spans = [(datetime.fromisoformat(r[3]), datetime.fromisoformat(r[4])) for r in runs]
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2)), spans
    tis = sql(env, "SELECT run_id, MIN(start_date), MAX(end_date) FROM task_instance WHERE dag_id='genre_nightly' "
                   "AND state='success' GROUP BY run_id ORDER BY MIN(start_date)")
    assert [t[0] for t in tis] == [r[0] for r in runs]
    assert all(tis[i][2] <= tis[i + 1][1] for i in range(2)), tis

    from genre_lib.config.settings import load_config
    from genre_lib.lake.storage import Lake
    from genre_lib.lake.tables import TABLES, outputs

    # every table has each night's partition, committed by that night's run; except what clean
    # writes per raw day: night N re-cleans days N - clean.late_days .. N, so the last run whose
    # window holds a day owns that day's interactions partitions
    late = load_config("configs/default.yaml", overrides(tmp_path)).clean.late_days
    lake = Lake(str(tmp_path / "lake"))
    run_of = {night: r[0] for r, night in zip(runs, NIGHTS)}
    for i, night in enumerate(NIGHTS):
        owner = run_of[NIGHTS[min(i + late, len(NIGHTS) - 1)]]
        for table in TABLES:
            assert night in lake.committed(table), (table, night)
            per_day = table in outputs("clean_interactions") and table != "items_clean"
            assert lake.manifest(table, night)["run_id"] == (owner if per_day else run_of[night]), (table, night)

    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    evals = mlflow.search_runs(experiment_names=["genre-nightly"], filter_string="tags.stage = 'evaluate'",
                               output_format="list")
    assert sorted(r.data.tags["run_date"] for r in evals) == NIGHTS
    keys = [sorted(r.data.metrics) for r in evals]
    assert keys[0] == keys[1] == keys[2] and any(k.endswith(".ndcg_at_10") for k in keys[0])
    parents = mlflow.search_runs(experiment_names=["genre-nightly"], filter_string="tags.stage = 'pipeline'",
                                 output_format="list")
    assert sorted(r.data.tags["run_date"] for r in parents) == NIGHTS
    assert all(r.info.status == "FINISHED" for r in parents)
