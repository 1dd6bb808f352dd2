"""What the DAG's first task does: turn the trigger form (or the schedule) into validated job
arguments, before any Spark or torch work starts, and open the MLflow parent run."""
from __future__ import annotations

import datetime as dt
import os
import shlex
from pathlib import Path
from typing import Optional

from genre_lib.config.settings import PROJECT_ROOT, ConfigError, load_config, parse_run_date, resolve_path
from genre_lib.datasets.source import source_for
from genre_lib.lake.tables import STAGES

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


def preflight(cfg, stage: Optional[str] = None) -> None:
    """Checks beyond the config schema, run before any Spark, torch or MLflow work by the DAG's first
    task for the whole run (`stage` None) and by each job for its stage: the source's input exists
    (clean), maintenance.keep_nights names tables kept by nights, and classifier.finetune_layers is not above the encoder's layer count (train; read
    from the encoder's config.json, without importing torch)."""
    if stage in (None, "clean_interactions"):
        source_for(cfg).check()
    from genre_lib.lake.tables import TABLES

    for table, nights in cfg.maintenance.keep_nights.items():
        if table not in TABLES or TABLES[table].history:
            raise ConfigError(f"maintenance.keep_nights: {table!r} is not a table kept by nights "
                              f"({sorted(t for t in TABLES if not TABLES[t].history)})")
        if nights < TABLES[table].min_nights:
            raise ConfigError(f"maintenance.keep_nights: {table} {nights} (at least {TABLES[table].min_nights})")
    n = cfg.classifier.finetune_layers
    if n > 0 and stage in (None, "train_classifier"):
        from genre_lib.classifier.encoder import encoder_layer_count

        layers = encoder_layer_count(cfg.encoder.model)
        if n > layers:
            raise ConfigError(f"classifier.finetune_layers: {n} but encoder {cfg.encoder.model!r} has only "
                              f"{layers} transformer layers")


def profile_choices() -> list[str]:
    """The YAML profiles the trigger form offers, relative to the project root: configs/*.yaml and
    configs/tuned/*.yaml (tuned profiles promoted on request)."""
    root = PROJECT_ROOT / "configs"
    found = sorted(root.glob("*.yaml")) + sorted((root / "tuned").glob("*.yaml"))
    return [p.relative_to(PROJECT_ROOT).as_posix() for p in found]


def selected_stages(value) -> list[str]:
    """The trigger form's `stages`: a non-empty list of stage names (None: all), in pipeline order."""
    if value is None:
        return list(STAGES)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"stages: expected a non-empty list of stage names out of {STAGES}, got {value!r}")
    unknown = [v for v in value if v not in STAGES]
    if unknown:
        raise ConfigError(f"stages: unknown {unknown}; choose from {STAGES}")
    return [s for s in STAGES if s in value]


def form_profile(params: dict) -> tuple[str, list[str]]:
    """A trigger form's `config` and `overrides` (genre_nightly's, genre_tuning's), checked: a
    profile of configs/, key=value lines, and paths inside the allowed roots."""
    config = params.get("config") or "configs/default.yaml"
    overrides = params.get("overrides") or []
    if isinstance(overrides, str):
        overrides = [o for o in overrides.splitlines() if o.strip()]
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError("overrides: expected a list of key=value strings")
    _check_inside("config", config)
    if config not in profile_choices():
        raise ConfigError(f"config: {config!r} is not one of the profiles {profile_choices()}")
    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() in PATH_KEYS:
            _check_inside(key.strip(), value.strip())
    return config, list(overrides)


def resolve_run(params: dict, run_id: str, logical_date: Optional[dt.datetime] = None,
                dag_id: str = "genre_nightly") -> dict:
    """Validate the run's parameters (again: the trigger form checks them too, but the CLI and the
    REST API can pass anything); returns the arguments every job of the run gets."""
    raw_date = params.get("run_date") or ""
    if not isinstance(raw_date, str):
        raise ConfigError(f"run_date: expected YYYY-MM-DD or empty, got {raw_date!r}")
    if raw_date.strip():
        run_date = parse_run_date(raw_date.strip())
    elif logical_date is not None:
        run_date = logical_date.date()
    else:  # a manual trigger without a logical date: last night
        run_date = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    config, overrides = form_profile(params)
    stages = selected_stages(params.get("stages"))
    full_refresh = params.get("full_refresh", False)
    if not isinstance(full_refresh, bool):
        raise ConfigError(f"full_refresh: expected true or false, got {full_refresh!r}")
    if full_refresh:  # re-embed every item instead of reusing last night's vectors
        overrides = [*overrides, "encoder.full_refresh=true"]
    cfg = load_config(config, overrides)
    preflight(cfg)

    from genre_lib.orchestration.tracking import parent_run
    parent = parent_run(cfg, run_id, run_date.isoformat(), dag_id)
    args = ["--config", config, "--run-date", run_date.isoformat(), "--run-id", run_id]
    for o in overrides:
        args += ["--set", o]
    return {"run_date": run_date.isoformat(), "args": args, "argline": shlex.join(args),
            "lake_root": cfg.lake_root, "mlflow_parent_run_id": parent, "stages": stages,
            "overrides": overrides}
