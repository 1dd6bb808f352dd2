"""What the DAG files are made of, so that they stay wiring only: one Airflow Asset per table with
the task that commits it, pools, timeouts and retries, each stage task's settings and doc (from the
stage declarations in lake/tables.py), the stage selection, the asset events' extra, and the example
consumer's check. The trigger forms are in forms.py, the failure callback in failures.py.

Assets are `genre://lake/<table>` (name `genre.<table>`): the lake root is chosen per run (profile,
`lake.root` override, an s3a:// lake on a cluster) while an Asset URI is fixed when the DAG file is
parsed, so a `file://<root>/<table>` URI would name the default lake even for a night written
elsewhere. Each event's extra carries the real partition instead: {table, ds, run_id, rows, path,
lake_root, committed_at}, read from the partition's `_SUCCESS` manifest.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Asset

from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import STAGE_SPECS, STAGES, TABLES, outputs
from genre_lib.orchestration.failures import on_task_failure


# --- assets ----------------------------------------------------------------------------------
def table_asset(table: str) -> Asset:
    t = TABLES[table]
    return Asset(name=f"genre.{table}", uri=f"genre://lake/{table}", group="genre-lake",
                 extra={"table": table, "writer_stage": t.stage, "layout": f"<lake.root>/{table}/ds=YYYY-MM-DD/"})


def partition_extra(lake: Lake, table: str, ds: str) -> dict:
    """The asset event's extra for one committed partition, from its manifest."""
    man = lake.manifest(table, ds)
    return {"table": table, "ds": ds, "run_id": man["run_id"], "rows": int(man["row_count"]),
            "path": lake.uri(table, f"ds={ds}"), "lake_root": lake.root, "committed_at": man.get("committed_at")}


# --- pools, timeouts, retries ------------------------------------------------------------------
# name -> (env var with the slot count, default slots, description). Fixed defaults sized for the
# one-machine profile: Spark stages may overlap two at a time (local[*] shares the cores); the
# torch stages want the whole accelerator, one at a time. `make airflow-init` creates them.
POOLS = {"spark": ("GENRE_SPARK_POOL_SLOTS", 2, "genre Spark stages (spark-submit)"),
         "gpu": ("GENRE_GPU_POOL_SLOTS", 1, "genre torch stages (encoder, classifier): one accelerator")}

# minutes, for the tasks that are not stages (the stages declare theirs in tables.STAGE_SPECS)
TIMEOUT_MIN = {"resolve_run": 10, "maintain": 60, "finish_run": 10, "tune": 480}
DEFAULT_TIMEOUT_MIN = 120
DAGRUN_TIMEOUT_H = 12  # a night must be done well before the next one starts


def _scale() -> float:
    """GENRE_TIMEOUT_SCALE (default 1) stretches every timeout, for catalogues far above the profiles'."""
    return float(os.environ.get("GENRE_TIMEOUT_SCALE", "1"))


def timeout(task_id: str) -> timedelta:
    minutes = STAGE_SPECS[task_id].timeout_min if task_id in STAGE_SPECS else TIMEOUT_MIN.get(task_id, DEFAULT_TIMEOUT_MIN)
    return timedelta(minutes=minutes * _scale())


def dagrun_timeout() -> timedelta:
    return timedelta(hours=DAGRUN_TIMEOUT_H * _scale())


def deadline():
    """genre_nightly's Deadline Alert: with GENRE_DEADLINE_MIN set, a night not done that many minutes
    after its run was queued is told once (alerts.deadline_missed, run by the triggerer); None without."""
    minutes = os.environ.get("GENRE_DEADLINE_MIN", "").strip()
    if not minutes:
        return None
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    from genre_lib.orchestration.alerts import deadline_missed

    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(minutes=float(minutes)),
                         callback=AsyncCallback(deadline_missed, kwargs={"minutes": float(minutes)}))


def default_args() -> dict:
    """Every task: retries with exponential backoff (Airflow 3: a multiplier, 2.0 doubles the
    delay), capped; a timeout; the failure callback. GENRE_TASK_RETRIES / GENRE_RETRY_DELAY_S
    override the retry count and first delay (tests use 0)."""
    return {"retries": int(os.environ.get("GENRE_TASK_RETRIES", "2")),
            "retry_delay": timedelta(seconds=float(os.environ.get("GENRE_RETRY_DELAY_S", "120"))),
            "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=30),
            "execution_timeout": timedelta(minutes=DEFAULT_TIMEOUT_MIN * _scale()),
            "on_failure_callback": [on_task_failure]}


def ensure_pools() -> dict[str, int]:
    """Create or resize the pools (`airflow pools import`); slot counts from the environment."""
    sizes = {name: int(os.environ.get(env, default)) for name, (env, default, _) in POOLS.items()}
    spec = {name: {"slots": sizes[name], "description": POOLS[name][2], "include_deferred": False} for name in POOLS}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        airflow = Path(sys.executable).with_name("airflow")
        subprocess.run([str(airflow) if airflow.exists() else "airflow", "pools", "import", f.name], check=True,
                       capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    return sizes


# --- per-task docs and settings, from the stage declarations -------------------------------------
def task_doc(task_id: str) -> str:
    if task_id == "resolve_run":
        return ("Reads the trigger form (or the schedule's defaults) and the profile it names.\n\n"
                "Writes the job arguments, the selected stages and the lake root to XCom, and opens the "
                "night's MLflow parent run. Refuses bad values with the field named, before any work.")
    if task_id == "maintain":
        return ("Reads every table's committed nights, the serving store's night, the MLflow runs and registry, "
                "Airflow's metadata.\n\nWrites `maintenance.json` in the MLflow parent run, after removing what "
                "expired (lake: `keep_nights` in lake/tables.py and the history window, never the served night or "
                "tonight; MLflow and Airflow: `maintenance.*`), each removal logged with its reason.")
    if task_id == "finish_run":
        return ("Reads the MLflow child runs of this DAG run, its failure tags, and tonight's check records and "
                "publish decision.\n\nWrites the parent run's status and `verdict.json`; sends one alert "
                "(GENRE_NOTIFIER_CONN) when a task failed, the gate refused, a check failed; fails unless the "
                "night went through, so a refused or stopped night is not green.")
    spec = STAGE_SPECS[task_id]
    tables = ", ".join(f"`{t}`" for t in spec.reads)
    reads = [f"{tables} (committed partitions up to the night)"] if tables else []
    if spec.other_inputs:
        reads.insert(0, spec.other_inputs)
    writes = [f"`<lake.root>/{t}/ds=<run_date>/` (Asset `genre://lake/{t}`)" for t in spec.writes]
    return (f"{spec.doc[0].upper()}{spec.doc[1:]}.\n\n"
            f"Runs `jobs/{task_id}.py` (its MLflow child run logs the partitions it read as input datasets).\n\n"
            "**Reads:** " + ("; ".join(reads) or "-") + "\n\n**Writes:** " + "; ".join(writes) +
            "\n\nSkipped when not among the run's `stages`.")


def stage_task(stage: str) -> dict:
    """Operator arguments of a stage task: its pool, queue, timeout, doc, the assets of the tables it
    commits, and the hooks that skip an unselected stage and annotate the asset events."""
    spec = STAGE_SPECS[stage]
    # the torch stages' Celery queue (the GPU workers'), set by the deployment that has them; without
    # it every task goes to Airflow's [operators] default_queue
    torch_queue = os.environ.get("GENRE_TORCH_QUEUE", "").strip()
    queue = {"queue": torch_queue} if spec.runs == "torch" and torch_queue else {}
    return {"task_id": stage, "pool": spec.pool, **queue, "execution_timeout": timeout(stage),
            "doc_md": task_doc(stage), "outlets": [table_asset(t) for t in spec.writes],
            # an unselected (skipped) upstream must not skip a selected downstream; a failed one still stops it
            "trigger_rule": "none_failed",
            "pre_execute": skip_unless_selected, "post_execute": announce_partitions}


def skip_unless_selected(context) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    stages = (context["ti"].xcom_pull(task_ids="resolve_run") or {}).get("stages", STAGES)
    if context["ti"].task_id not in stages:
        raise AirflowSkipException(f"{context['ti'].task_id} is not among the selected stages {stages}")


def announce_partitions(context, result=None) -> None:
    """post_execute of a stage: each table it committed tonight becomes an asset event whose extra
    names the partition; a partition not committed by this run fails the task."""
    resolved = context["ti"].xcom_pull(task_ids="resolve_run")
    lake, ds = Lake(resolved["lake_root"]), resolved["run_date"]
    for table in outputs(context["ti"].task_id):
        extra = partition_extra(lake, table, ds)
        if extra["run_id"] != context["run_id"]:
            raise RuntimeError(f"{table} ds={ds} was committed by run {extra['run_id']}, not {context['run_id']}")
        context["outlet_events"][table_asset(table)].extra = extra


# --- the example consumer ------------------------------------------------------------------------
def night_from_events(events) -> dict:
    """The night a `recommendations` consumer run was triggered for: the newest triggering asset
    event's extra, checked against the lake (committed, same producing run, same row count)."""
    if not events:
        raise ValueError("no triggering recommendations event")
    event = max(events, key=lambda e: e.timestamp)
    extra = dict(event.extra or {})
    missing = [k for k in ("ds", "run_id", "rows", "lake_root") if k not in extra]
    if missing:
        raise ValueError(f"asset event without {missing} in its extra: {extra}")
    lake = Lake(extra["lake_root"])
    if extra["ds"] not in lake.committed("recommendations"):
        raise FileNotFoundError(f"recommendations ds={extra['ds']} is not committed under {extra['lake_root']}")
    now = partition_extra(lake, "recommendations", extra["ds"])
    if (now["run_id"], now["rows"]) != (extra["run_id"], extra["rows"]):
        raise RuntimeError(f"recommendations ds={extra['ds']} changed since the event: {now} vs {extra}")
    return {"ds": extra["ds"], "run_id": extra["run_id"], "rows": extra["rows"], "path": extra["path"],
            "events": len(events), "source_dag_id": event.source_dag_id, "source_run_id": event.source_run_id}


if __name__ == "__main__":  # python -m genre_lib.orchestration.dag_support pools
    if sys.argv[1:] != ["pools"]:
        raise SystemExit("usage: python -m genre_lib.orchestration.dag_support pools")
    print("pools:", ensure_pools())
