"""The maintenance task of genre_nightly (after the night's last stage, before its verdict): what has
expired goes, each removal logged with what and why, and listed in the MLflow parent run.

- The lake: every table's `keep_nights` (lake/tables.py), and the history tables' window
  (`genres.lookback_days`), through lake/retention.py. Protected: every
  table's partition of the night the serving store serves, and tonight's (max_active_runs=1: no
  other night runs meanwhile).
- MLflow: runs of the pipeline's experiments (nightly and tuning) whose night is more than
  `maintenance.mlflow_keep_days` before tonight are deleted, then garbage-collected with their
  artifacts (`mlflow gc`, then the input links and datasets that gc leaves), except the runs that
  produced a model version still kept and the trends run.
- The model registry: of each registered model (the classifier, the re-ranker trees), the newest
  `maintenance.registry_keep` versions stay, and any version holding an alias (champion) whatever
  its age.
- Airflow's metadata: `airflow db clean` of what is older than `maintenance.airflow_keep_days`, on
  the database GENRE_AIRFLOW_DB_CONN names (a task cannot reach it otherwise in Airflow 3).

`maintenance.dry_run` (or `python -m genre_lib.orchestration.maintenance --dry-run`) lists it all
and removes nothing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

from genre_lib.lake import retention
from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import TABLES

log = logging.getLogger("genre.maintenance")
DAY_S = 86_400
# what a night adds to Airflow's metadata; never the DAGs themselves (`dag`, `dag_version`: without a
# DAG processor running, a DAG whose rows went is "not found" until it is parsed again)
AIRFLOW_TABLES = ("dag_run", "task_instance", "task_instance_history", "task_reschedule", "xcom", "log", "job",
                  "asset_event", "deadline", "callback", "trigger")


def served_night(cfg) -> str | None:
    from genre_lib.serve.store import store_for

    store = store_for(cfg)
    try:
        return str(store.current()["ds"]) if store.initialised() and store.current() else None
    finally:
        store.close()


def lake_removals(cfg, ds: str, dry_run: bool) -> list[dict]:
    lake = Lake(cfg.lake_root)
    nights = {ds} | ({served_night(cfg)} - {None})
    protect = [(t, n) for t in TABLES for n in nights]
    done = retention.expire(lake, ds, protect, dry_run=dry_run, history_days=cfg.genres.lookback_days,
                            keep_nights=cfg.maintenance.keep_nights)
    if cfg.lake.scratch_root:
        done += retention.expire(Lake(cfg.lake.scratch_root), ds, dry_run=dry_run)
    return [{"what": f"lake {r.table} ds={r.ds}", "why": r.reason, "path": r.path} for r in done]


def registry_removals(client, keep: int | None, dry_run: bool) -> tuple[list[dict], set[str], set[str], set[str]]:
    """Model versions beyond the newest `keep` of each registered model, never an aliased one;
    returns what went, the runs and logged models behind the versions that stay, and the logged
    models of the versions that went."""
    out, kept_runs, kept_models, dropped = [], set(), set(), set()
    for model in client.search_registered_models():
        aliased = set((model.aliases or {}).values()) if isinstance(model.aliases, dict) else \
            {getattr(a, "version", None) for a in (model.aliases or [])}
        versions = sorted(client.search_model_versions(f"name='{model.name}'"), key=lambda v: -int(v.version))
        for i, v in enumerate(versions):
            if keep is None or i < keep or str(v.version) in {str(a) for a in aliased}:
                kept_runs.add(v.run_id)
                kept_models.add(_model_id(v))
                continue
            why = f"older than the newest {keep} versions of {model.name}, holds no alias"
            log.info("maintenance%s: model %s version %s: %s", " (dry run)" if dry_run else "", model.name,
                     v.version, why)
            if not dry_run:
                client.delete_model_version(model.name, v.version)
            dropped.add(_model_id(v))
            out.append({"what": f"model {model.name} version {v.version}", "why": why})
    return out, kept_runs, kept_models - {None}, dropped - {None}


def _model_id(version):
    """The logged model behind a registry version: its model_id, else its `models:/m-...` source."""
    src = version.source or ""
    return getattr(version, "model_id", None) or (src[len("models:/"):].split("/")[0] if src.startswith("models:/m-")
                                                  else None)


def mlflow_removals(cfg, ds: str, keep_days: int | None, keep_runs: set[str], dry_run: bool, now: float,
                    kept_models: frozenset = frozenset(), dropped_models: frozenset = frozenset()) -> list[dict]:
    """Runs of the nightly and tuning experiments older than `keep_days`: counted from the run's night
    (tag run_date) to tonight, so that a backfill or a replay ages as its nights do; from its start
    time for a run without one. Never a run behind a kept model version, nor the trends run. The
    logged models (MLflow 3 keeps them apart from their runs) of those runs and of the registry
    versions that went go too, unless a kept version uses them; then `mlflow gc` removes all of it."""
    from mlflow.tracking import MlflowClient

    from genre_lib.orchestration.tracking import tracking_uri

    client = MlflowClient(tracking_uri(cfg))
    exps = [e for e in (client.get_experiment_by_name(n) for n in (cfg.mlflow.experiment, cfg.tuning.experiment)) if e]
    out, ids = [], []
    if keep_days is not None:
        first = str(dt.date.fromisoformat(ds) - dt.timedelta(days=keep_days))
        cutoff_ms = int((now - keep_days * DAY_S) * 1000)
        for exp in exps:
            for run in client.search_runs([exp.experiment_id], max_results=50_000):
                night = run.data.tags.get("run_date") or ""
                old = night < first if night else run.info.start_time < cutoff_ms
                if not old or run.info.run_id in keep_runs or run.data.tags.get("stage") == "trends":
                    continue
                why = (f"night {night} is more than mlflow_keep_days {keep_days} before {ds}" if night else
                       f"started {dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.timezone.utc):%Y-%m-%d}, "
                       f"more than mlflow_keep_days {keep_days} ago")
                log.info("maintenance%s: MLflow run %s (%s): %s", " (dry run)" if dry_run else "", run.info.run_id,
                         run.info.run_name, why)
                if not dry_run:
                    client.delete_run(run.info.run_id)
                ids.append(run.info.run_id)
                out.append({"what": f"mlflow run {run.info.run_id} ({run.info.run_name})", "why": why})
    models = []
    gone = set(ids)
    for exp in exps:
        for m in client.search_logged_models([exp.experiment_id], max_results=50_000):
            if m.model_id in kept_models or not (m.source_run_id in gone or m.model_id in dropped_models):
                continue
            why = "its run was removed" if m.source_run_id in gone else "its registry version was removed"
            if not dry_run:
                client.delete_logged_model(m.model_id)
            models.append(m.model_id)
            out.append({"what": f"mlflow logged model {m.model_id} ({m.name})", "why": why})
    if (ids or models) and not dry_run:  # deleted runs and models are only marked; gc removes them and their files
        subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", tracking_uri(cfg),
                        *(["--run-ids", ",".join(ids)] if ids else []),
                        *(["--logged-model-ids", ",".join(models)] if models else [])],
                       check=True, capture_output=True, text=True)
        out += mlflow_orphans(tracking_uri(cfg))
    return out


# `mlflow gc` removes a run's own rows but not the `inputs` that name it (they point at a run, a dataset
# or a model by id, with no foreign key) nor the datasets only those named: each night logs every
# partition it read, so without this the store grows by a few hundred KB a night for ever
ORPHAN_INPUTS = ("(destination_type = 'RUN' AND destination_id NOT IN (SELECT run_uuid FROM runs)) OR "
                 "(source_type IN ('RUN_INPUT', 'RUN_OUTPUT') AND source_id NOT IN (SELECT run_uuid FROM runs))")


def mlflow_orphans(uri: str) -> list[dict]:
    """Delete the input links of runs gc removed, their tags, and the datasets no run uses any more.
    Only a database store can be reached from here; a tracking server's own store is left alone."""
    import sqlalchemy as sa

    if uri.split(":", 1)[0] in ("http", "https", "databricks", "file") or "://" not in uri:
        log.info("maintenance: MLflow store %s is not a database here: its orphaned inputs are left", uri)
        return []
    engine = sa.create_engine(uri)
    try:
        with engine.begin() as db:
            db.execute(sa.text(f"DELETE FROM input_tags WHERE input_uuid IN "
                               f"(SELECT input_uuid FROM inputs WHERE {ORPHAN_INPUTS})"))
            links = db.execute(sa.text(f"DELETE FROM inputs WHERE {ORPHAN_INPUTS}")).rowcount
            sets = db.execute(sa.text("DELETE FROM datasets WHERE dataset_uuid NOT IN "
                                      "(SELECT source_id FROM inputs WHERE source_type = 'DATASET')")).rowcount
    finally:
        engine.dispose()
    log.info("maintenance: MLflow inputs of removed runs: %d links and %d datasets deleted", links, sets)
    return [{"what": f"mlflow input links: {links}, datasets: {sets}", "why": "their runs were garbage-collected"}
            ] if links or sets else []


def airflow_clean(keep_days: float | None, dry_run: bool, now: float, running_since: float | None = None) -> list[dict]:
    """`airflow db clean` on the database GENRE_AIRFLOW_DB_CONN names: Airflow 3 hides its metadata
    database from tasks (their SQL_ALCHEMY_CONN is replaced), so the deployment hands it to this one
    task on purpose; without it nothing is trimmed and the log says so."""
    import os

    db = os.environ.get("GENRE_AIRFLOW_DB_CONN", "").strip()
    if keep_days is None:
        return []
    if not db:
        log.warning("maintenance: Airflow's metadata not trimmed: GENRE_AIRFLOW_DB_CONN is unset (Airflow 3 tasks "
                    "cannot reach the metadata database otherwise)")
        return []
    if db.startswith("sqlite:///") and not os.path.isfile(db[len("sqlite:///"):]):
        log.warning("maintenance: Airflow's metadata not trimmed: GENRE_AIRFLOW_DB_CONN names %s, which does not "
                    "exist (a deployment whose Airflow database is elsewhere must set it)", db)
        return []
    # never past the start of the night that runs this: `airflow db clean` would delete a running run
    # (it keeps only the newest scheduled run of each DAG, and no manual one)
    cutoff = min(now - keep_days * DAY_S, running_since - 1 if running_since else now)
    before = dt.datetime.fromtimestamp(cutoff, dt.timezone.utc).isoformat()
    airflow = Path(sys.executable).with_name("airflow")
    cmd = [str(airflow) if airflow.exists() else shutil.which("airflow") or "airflow", "db", "clean",
           "--clean-before-timestamp", before, "--tables", ",".join(AIRFLOW_TABLES), "--yes", "--skip-archive", *(["--dry-run"] if dry_run else [])]
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db clean failed ({done.returncode}): {done.stderr[-2000:]}")
    log.info("maintenance%s: airflow db clean before %s", " (dry run)" if dry_run else "", before)
    return [{"what": "airflow metadata", "why": f"older than airflow_keep_days {keep_days} ({before})"}]


def maintain(cfg, ds: str, dry_run: bool = False, now: float | None = None, airflow_db: bool = True,
             running_since: float | None = None) -> dict:
    """Everything above for night `ds`; returns {"lake": [...], "registry": [...], "mlflow": [...],
    "airflow": [...], "dry_run": ...}, each entry a removal with its reason."""
    from mlflow.tracking import MlflowClient

    from genre_lib.orchestration.tracking import tracking_uri

    m, now = cfg.maintenance, time.time() if now is None else now
    dry_run = dry_run or m.dry_run
    report = {"dry_run": dry_run, "lake": lake_removals(cfg, ds, dry_run)}
    report["registry"], keep_runs, kept, dropped = registry_removals(MlflowClient(tracking_uri(cfg)), m.registry_keep,
                                                                     dry_run)
    report["mlflow"] = mlflow_removals(cfg, ds, m.mlflow_keep_days, keep_runs, dry_run, now, kept, dropped)
    report["airflow"] = airflow_clean(m.airflow_keep_days, dry_run, now, running_since) if airflow_db else []
    log.info("maintenance %s%s: %s", ds, " (dry run)" if dry_run else "", {k: len(v) for k, v in report.items()
                                                                          if isinstance(v, list)})
    return report


def nightly_task(params: dict, resolved: dict, run_id: str, running_since: float | None = None) -> dict:
    """genre_nightly's maintain task: `maintain` for the run's night (`running_since`: when its DAG run
    started, what Airflow's cleanup must not reach), its report in the MLflow parent run."""
    from mlflow.tracking import MlflowClient

    from genre_lib.config.settings import load_config
    from genre_lib.orchestration.tracking import parent_run, tracking_uri

    cfg = load_config(params.get("config") or "configs/default.yaml", resolved.get("overrides") or [])
    if not cfg.maintenance.enabled:
        log.info("maintenance.enabled is off: nothing removed")
        return {}
    ds = resolved["run_date"]
    report = maintain(cfg, ds, running_since=running_since)
    client = MlflowClient(tracking_uri(cfg))
    parent = parent_run(cfg, run_id, ds)
    client.log_dict(parent, report, "maintenance.json")
    for k, v in report.items():
        if isinstance(v, list):
            client.log_metric(parent, f"maintenance.removed.{k}", len(v))
    return {k: len(v) for k, v in report.items() if isinstance(v, list)}


def main(argv=None) -> int:
    """python -m genre_lib.orchestration.maintenance --run-date D [--config P] [--set k=v] [--dry-run]"""
    import json

    from genre_lib.config.settings import load_config

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--run-date", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--no-airflow", action="store_true", help="leave Airflow's metadata database alone")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = maintain(load_config(args.config, args.overrides), args.run_date, args.dry_run,
                      airflow_db=not args.no_airflow)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
