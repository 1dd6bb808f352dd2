"""MLflow tracking: one parent run per pipeline run (an Airflow DAG run), one child run per stage."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

from genre_lib.config.settings import PROJECT_ROOT, PipelineConfig

os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")


def tracking_uri(cfg: PipelineConfig) -> str:
    """Config first, then the environment, then an absolute SQLite file in the repo (MLflow's own
    default is relative to the working directory, which differs between Airflow tasks)."""
    return (cfg.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")


def experiment_id(cfg: PipelineConfig, name: Optional[str] = None) -> str:
    """The id of experiment `name` (default cfg.mlflow.experiment), created on first use."""
    import mlflow

    name = name or cfg.mlflow.experiment
    mlflow.set_tracking_uri(tracking_uri(cfg))
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifacts = None
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        # Beside the database file; MLflow's default is ./mlruns of whichever process created it.
        artifacts = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=artifacts)
    except Exception:  # created concurrently by another stage
        return mlflow.get_experiment_by_name(name).experiment_id


def parent_run(cfg: PipelineConfig, run_id: str, run_date: str, dag_id: str = "genre_nightly") -> str:
    """Find or create the parent run of a pipeline run; idempotent so task retries reuse it."""
    from mlflow.tracking import MlflowClient

    exp = experiment_id(cfg)
    client = MlflowClient(tracking_uri(cfg))
    found = client.search_runs([exp], filter_string=f"tags.airflow_run_id = '{run_id}' and tags.stage = 'pipeline'",
                               max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(exp, run_name=f"{dag_id} {run_date} {run_id}", tags={
        "airflow_dag_id": dag_id, "airflow_run_id": run_id, "run_date": run_date, "stage": "pipeline",
        "config_hash": cfg.hash()})
    client.log_dict(run.info.run_id, cfg.to_dict(), "config.json")
    return run.info.run_id


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@contextlib.contextmanager
def stage_run(cfg: PipelineConfig, stage: str, run_id: str, run_date: str) -> Iterator:
    """A child run of the pipeline's parent run, with the resolved config as params and artifact.
    Fails the MLflow run (status FAILED) when the stage raises."""
    import mlflow

    parent = parent_run(cfg, run_id, run_date)
    mlflow.set_tracking_uri(tracking_uri(cfg))
    with mlflow.start_run(experiment_id=experiment_id(cfg), run_name=f"{stage} {run_date}", tags={
            "mlflow.parentRunId": parent, "airflow_run_id": run_id, "run_date": run_date, "stage": stage,
            "config_hash": cfg.hash()}) as run:
        params = {k: str(v)[:500] for k, v in _flatten(cfg.to_dict()).items()}
        items = list(params.items())
        for i in range(0, len(items), 100):
            mlflow.log_params(dict(items[i:i + 100]))
        mlflow.log_dict(cfg.to_dict(), "config.json")
        yield run


def log_metrics(metrics: dict, step: Optional[int] = None) -> None:
    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if clean:
        mlflow.log_metrics(clean, step=step)


def child_runs(cfg: PipelineConfig, run_id: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(cfg))
    return client.search_runs([experiment_id(cfg)],
                              filter_string=f"tags.airflow_run_id = '{run_id}' and tags.stage != 'pipeline'")



def log_inputs(reads: list) -> int:
    """Log the lake partitions a stage read (tables.PartitionRead) as MLflow input datasets of the
    active run: source = the partition's URI, digest = its manifest's sha256 (cut to the 36
    characters MLflow stores; the full hash is the input's `manifest_sha256` tag). Returns how
    many were logged."""
    import re
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    datasets, tags = [], []
    for r in reads:
        with warnings.catch_warnings():  # "can be interpreted in multiple ways: Local..., Local..."
            warnings.simplefilter("ignore", UserWarning)
            try:
                source = resolve_dataset_source(r.path)
            except Exception:  # s3a:// and s3n:// are Hadoop's names for what MLflow knows as s3://
                source = resolve_dataset_source(re.sub(r"^s3[an]://", "s3://", r.path))
        datasets.append(MetaDataset(source, name=f"{r.table}/ds={r.ds}", digest=r.manifest_sha256[:36]))
        tags.append({"table": r.table, "ds": r.ds, "rows": str(r.rows), "producer_run_id": r.producer_run_id,
                     "manifest_sha256": r.manifest_sha256})
    for i in range(0, len(datasets), 500):  # MLflow takes at most 1000 per call (years of daily partitions)
        mlflow.log_inputs(datasets[i:i + 500], ["input"] * len(datasets[i:i + 500]), tags[i:i + 500])
    return len(datasets)
