"""What the DAG's first task does: turn the trigger form (or the schedule) into validated job
arguments, before any Spark or torch work starts, and open the MLflow parent run."""
from __future__ import annotations

import datetime as dt
import os
import shlex
from pathlib import Path
from typing import Optional

from genre_lib.config import PROJECT_ROOT, ConfigError, load_config, parse_run_date, resolve_path

# Keys whose values are paths: the trigger form may only point them inside the allowed roots.
PATH_KEYS = ("lake.root", "data.path")


def allowed_roots() -> list[Path]:
    """The project and any folders an operator lists in GENRE_ALLOWED_ROOTS (os.pathsep-separated)."""
    extra = [p for p in os.environ.get("GENRE_ALLOWED_ROOTS", "").split(os.pathsep) if p]
    return [PROJECT_ROOT.resolve(), *(Path(resolve_path(p)).resolve() for p in extra)]


def _check_inside(field: str, value: str) -> None:
    if "://" in value:
        raise ConfigError(f"{field}: {value!r} must be a local path when given through the trigger form")
    # the real location: `..` segments and symlinks resolved, so neither can step outside a root
    path = Path(resolve_path(value)).resolve()
    if not any(path == root or root in path.parents for root in allowed_roots()):
        raise ConfigError(f"{field}: {value!r} is outside the allowed roots {[str(r) for r in allowed_roots()]} "
                          "(set GENRE_ALLOWED_ROOTS to allow more)")


STAGES = ["clean_interactions", "genre_weights", "embed_texts", "train_classifier", "recommend", "evaluate"]


def check_source(cfg) -> None:
    """The input folder must exist before a run starts (synthetic data: `make data` writes it)."""
    if "://" not in cfg.data.path and not Path(cfg.data_path).exists():
        raise ConfigError(f"data.path: {cfg.data_path} not found")


def check_finetune_layers(cfg) -> None:
    """classifier.finetune_layers above the encoder's layer count is refused (exit 2, both numbers
    named) before any MLflow run or training starts; reads the encoder's config.json, not torch."""
    n = cfg.classifier.finetune_layers
    if n > 0:
        from genre_lib.encoder import encoder_layer_count

        layers = encoder_layer_count(cfg.encoder.model)
        if n > layers:
            raise ConfigError(f"classifier.finetune_layers: {n} but encoder {cfg.encoder.model!r} has only "
                              f"{layers} transformer layers")


def resolve_run(params: dict, run_id: str, logical_date: Optional[dt.datetime] = None,
                dag_id: str = "genre_nightly") -> dict:
    """Validate the run's parameters; returns the arguments every job of the run gets."""
    raw_date = (params.get("run_date") or "").strip()
    if raw_date:
        run_date = parse_run_date(raw_date)
    elif logical_date is not None:
        run_date = logical_date.date()
    else:  # a manual trigger without a logical date: last night
        run_date = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    config = params.get("config") or "configs/default.yaml"
    overrides = params.get("overrides") or []
    if isinstance(overrides, str):
        overrides = [o for o in overrides.splitlines() if o.strip()]
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError("overrides: expected a list of key=value strings")
    _check_inside("config", config)
    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() in PATH_KEYS:
            _check_inside(key.strip(), value.strip())
    cfg = load_config(config, overrides)
    check_source(cfg)

    from genre_lib.tracking import parent_run
    parent = parent_run(cfg, run_id, run_date.isoformat(), dag_id)
    args = ["--config", config, "--run-date", run_date.isoformat(), "--run-id", run_id]
    for o in overrides:
        args += ["--set", o]
    return {"run_date": run_date.isoformat(), "args": args, "argline": shlex.join(args),
            "lake_root": cfg.lake_root, "mlflow_parent_run_id": parent}


def finish_run(params: dict, run_id: str) -> str:
    """Close the MLflow parent run: FINISHED when every stage's child run finished, else FAILED."""
    from mlflow.tracking import MlflowClient

    from genre_lib.tracking import child_runs, parent_run, tracking_uri

    cfg = load_config(params.get("config") or "configs/default.yaml", params.get("overrides") or [])
    done = {r.data.tags.get("stage") for r in child_runs(cfg, run_id) if r.info.status == "FINISHED"}
    status = "FINISHED" if set(STAGES) <= done else "FAILED"
    client = MlflowClient(tracking_uri(cfg))
    parent = parent_run(cfg, run_id, "")
    client.set_tag(parent, "stages_finished", ",".join(s for s in STAGES if s in done))
    client.set_terminated(parent, status)
    if status == "FAILED":  # the DAG run must fail too: this task is its only leaf
        raise RuntimeError(f"stages without a finished run: {[s for s in STAGES if s not in done]}")
    return status
