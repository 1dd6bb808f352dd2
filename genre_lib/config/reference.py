"""The configuration reference, docs/configuration.md, generated from the code: every key of PipelineConfig
in its order (type, default, allowed values from the Literal types, bounds and validators, description),
the checks across keys, and every GENRE_* environment variable the project reads (ENV_VARS, below).

    python -m genre_lib.config --reference    write docs/configuration.md
    python -m genre_lib.config --check        exit 1 when it is stale

tests/test_config_reference.py fails when the file is stale, a field has no description, or the code
mentions a GENRE_* variable that ENV_VARS lacks."""
from __future__ import annotations

import datetime as dt
import json
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from genre_lib.config.moved import MOVED
from genre_lib.config.settings import PROJECT_ROOT, PipelineConfig

DOC_PATH = PROJECT_ROOT / "docs" / "configuration.md"
COMMAND = "python -m genre_lib.config --reference"


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str   # what applies when unset ("unset": nothing does)
    read_by: str   # who reads it (or, for the production profile, who sets and uses it)
    does: str


_PROD = "configs/production.env, bench/prod_check.py"
# group title -> its variables. Test hooks are read by the code too, but only tests and benches set them.
ENV_VARS: dict[str, tuple[EnvVar, ...]] = {
    "Read by the pipeline, its DAGs and the read API": (
        EnvVar("GENRE_ALLOWED_ROOTS", "unset: the project only", "genre_lib/orchestration/pipeline.py (resolve_run)",
               "Folders (os.pathsep-separated) besides the project that lake.root and data.path may point into "
               "when they are set through the DAG's trigger form."),
        EnvVar("GENRE_API_KEY", "unset: no key", "genre_lib/serve/api.py",
               "When set, every read API request needs the header X-API-Key with this value."),
        EnvVar("GENRE_GPU_POOL_SLOTS", "1", "genre_lib/orchestration/dag_support.py (make airflow-init, airflow-pools)",
               "Slots of the Airflow pool gpu, where the torch stages (embed, classifier) run."),
        EnvVar("GENRE_AIRFLOW_DB_CONN", "the Makefile: Airflow's own SQL_ALCHEMY_CONN", "genre_lib/orchestration/"
               "maintenance.py (the maintain task)", "Airflow's metadata database URL for `airflow db clean`: Airflow "
               "3 hides it from tasks; unset, the metadata is not trimmed (a warning in the task log)."),
        EnvVar("GENRE_DEADLINE_MIN", "unset: no deadline", "genre_lib/orchestration/dag_support.py (genre_nightly's "
               "Deadline Alert)", "Minutes after a night's run is queued by which it must be done; a night still "
               "running then is told once through GENRE_NOTIFIER_CONN."),
        EnvVar("GENRE_MLFLOW_UI_URL", "http://127.0.0.1:5000", "genre_lib/orchestration/alerts.py",
               "The MLflow UI an alert links the night's parent run in."),
        EnvVar("GENRE_NOTIFIER_CONN", "unset: no notification", "genre_lib/orchestration/alerts.py (finish_run's "
               "verdict, the deadline alert; failures.py for genre_tuning)", "Airflow connection (smtp: the smtp "
               "provider's SmtpNotifier to the extra's `to`; http or https: the http provider's HttpNotifier, a JSON "
               "POST to the extra's `endpoint`) told once per night that failed, was refused, stopped by a blocking "
               "check, had a failed warning check or missed its deadline."),
        EnvVar("GENRE_PROGRESS_S", "30", "genre_lib/orchestration/progress.py (every job)",
               "Seconds between progress lines (heartbeat, epochs) in the task log; at least 0.5."),
        EnvVar("GENRE_PSEUDONYM_KEY", "unset", "genre_lib/lake/pseudonym.py (recommend), genre_lib/serve/api.py; "
               "docker/compose.yaml passes it on", "Key of the user pseudonyms when recommend.privacy.pseudonymize_users "
               "is on: the default of recommend.privacy.pseudonym_key_env, which names the variable actually read."),
        EnvVar("GENRE_RETRY_DELAY_S", "120", "genre_lib/orchestration/dag_support.py",
               "Seconds before a DAG task's first retry (doubled per retry, at most 30 minutes)."),
        EnvVar("GENRE_SERVE_CONFIG", "unset: the defaults", "genre_lib/serve/api.py (uvicorn --factory); set by "
               "python -m genre_lib.serve", "Profile the read API's workers load."),
        EnvVar("GENRE_SERVE_SET", "unset: none", "genre_lib/serve/api.py; set by python -m genre_lib.serve",
               "Overrides (key=value, one per line) of the read API's profile."),
        EnvVar("GENRE_SPARK_POOL_SLOTS", "2", "genre_lib/orchestration/dag_support.py (make airflow-init, "
               "airflow-pools)", "Slots of the Airflow pool spark, where the Spark stages run."),
        EnvVar("GENRE_TASK_RETRIES", "2", "genre_lib/orchestration/dag_support.py", "Retries of every DAG task."),
        EnvVar("GENRE_TIMEOUT_SCALE", "1", "genre_lib/orchestration/dag_support.py",
               "Factor on every task timeout and on the DAG run timeout, for catalogues far above the profiles'."),
        EnvVar("GENRE_LAKE_GRACE_S", "3600", "genre_lib/lake/storage.py",
               "Seconds a superseded partition attempt is kept after its partition's manifest switched to a "
               "newer one, so that a reader that started before the switch can finish; the fault-injection "
               "tests set 0."),
        EnvVar("GENRE_TORCH_QUEUE", "unset: the default queue", "genre_lib/orchestration/dag_support.py",
               "Celery queue of the torch stages (embed_texts, train_classifier), e.g. `gpu` where GPU workers "
               "serve it (docker/compose.yaml); read when the DAG file is parsed."),
        EnvVar("GENRE_TUNING_STORAGE", "unset: tuning/optuna.db (SQLite)", "genre_lib/evaluation/tuning.py; "
               "configs/production.env sets it", "Optuna storage URL of the tuning study when tuning.storage is "
               "null."),
    ),
    "The production profile (configs/production.env, sourced with `set -a`)": (
        EnvVar("GENRE_ROOT", "required", _PROD, "The repository root; the profile's paths derive from it."),
        EnvVar("GENRE_STATE", "$GENRE_ROOT/prod_state", _PROD, "Folder of the profile's state (AIRFLOW_HOME, "
               "MLflow artifacts)."),
        EnvVar("GENRE_PYTHON", "$GENRE_ROOT/.venv/bin/python", _PROD, "Interpreter of the jobs and of Spark's "
               "Python workers (PATH, PYSPARK_PYTHON)."),
        EnvVar("GENRE_PG_HOST", "127.0.0.1", _PROD, "PostgreSQL host of the Airflow, MLflow and Optuna databases."),
        EnvVar("GENRE_PG_PORT", "5432", _PROD, "PostgreSQL port."),
        EnvVar("GENRE_PG_USER", "postgres", _PROD, "PostgreSQL user (passwords only through PGPASSWORD or "
               "~/.pgpass)."),
        EnvVar("GENRE_PG", "$GENRE_PG_USER@$GENRE_PG_HOST:$GENRE_PG_PORT", "configs/production.env",
               "Derived: the user@host:port of the database URLs."),
        EnvVar("GENRE_AIRFLOW_DB", "genre_airflow", _PROD, "Database of Airflow's metadata and Celery results."),
        EnvVar("GENRE_MLFLOW_DB", "genre_mlflow", _PROD, "Database of the MLflow tracking server."),
        EnvVar("GENRE_OPTUNA_DB", "genre_optuna", _PROD, "Database of the tuning studies (GENRE_TUNING_STORAGE)."),
        EnvVar("GENRE_MLFLOW_BACKEND_URI", "postgresql+psycopg2://$GENRE_PG/$GENRE_MLFLOW_DB", _PROD,
               "Backend store of mlflow server."),
        EnvVar("GENRE_MLFLOW_ARTIFACTS", "$GENRE_STATE/mlartifacts", _PROD, "Where mlflow server keeps the "
               "artifacts it proxies."),
        EnvVar("GENRE_REDIS_URL", "redis://127.0.0.1:6379/0", _PROD, "Redis of the Celery broker (prod_check also "
               "publishes to it)."),
        EnvVar("GENRE_BIND_HOST", "127.0.0.1", _PROD, "Address the Airflow API server and mlflow server listen on."),
        EnvVar("GENRE_AIRFLOW_API_PORT", "8080", _PROD, "Port of the Airflow API server (and its UI)."),
        EnvVar("GENRE_MLFLOW_PORT", "5000", f"{_PROD}, bench/ui_check.py", "Port of mlflow server "
               "(MLFLOW_TRACKING_URI)."),
        EnvVar("GENRE_SPARK_MASTER", "local[*]", _PROD, "Master of the spark_default connection that the DAG's "
               "spark-submit tasks use."),
    ),
    "Test and bench hooks": (
        EnvVar("GENRE_FAIL_STAGE", "unset", "genre_lib/orchestration/jobrun.py", "<stage>[:oom-python|:oom-jvm|:sleep-<s>]"
               "[@YYYY-MM-DD][,...]: that stage fails (or runs out of memory) once its MLflow run is open; "
               "sleep-<s>: it takes s seconds longer, then goes on (a night that overruns its deadline)."),
        EnvVar("GENRE_FAULT_AT", "unset", "genre_lib/lake/faults.py (tests/reliability)", "<fault point>: the "
               "process kills itself (SIGKILL) at that point of a table commit."),
        EnvVar("GENRE_FAULT_FILE", "unset", "genre_lib/lake/faults.py (bench/soak.py)", "<path> of a file naming a "
               "fault point: the first process to reach that point takes the file away and dies (SIGKILL); its "
               "retry runs through."),
        EnvVar("GENRE_PROD_CHECK", "unset: skipped", "tests/test_prod_profile.py", "1: run the opt-in "
               "production-profile test (PostgreSQL and Redis needed)."),
        EnvVar("GENRE_SKIP_SPARK", "unset", "tests/test_encoder.py", "1: skip the Spark encoder test."),
    ),
}
# GENRE_* names in the code that are Python names, not environment variables
NOT_ENV = {"GENRE_EPS": "a constant of genre_lib/ranking/blend.py",
           "GENRE_WORDS": "a constant of genre_lib/datasets/synthetic.py"}
# where a GENRE_* variable the code reads must be documented from
SCANNED = ("genre_lib", "jobs", "dags", "Makefile", "docker")
ENV_NAME = re.compile(r"(?<![A-Za-z0-9_])GENRE_[A-Z0-9_]*[A-Z0-9]")


def env_names(paths=SCANNED, root: Path = PROJECT_ROOT) -> dict[str, list[str]]:
    """GENRE_* name -> the files under `paths` that mention it (this module, caches and NOT_ENV left out)."""
    found: dict[str, list[str]] = {}
    for top in paths:
        base = root / top
        for f in sorted([base] if base.is_file() else base.rglob("*")):
            if not f.is_file() or "__pycache__" in f.parts or f.resolve() == Path(__file__).resolve():
                continue
            try:
                text = f.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            for name in sorted(set(ENV_NAME.findall(text)) - set(NOT_ENV)):
                found.setdefault(name, []).append(f.relative_to(root).as_posix())
    return found


# --- the keys ---------------------------------------------------------------------------------------
_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dt.date: "date", dt.datetime: "datetime",
          Any: "any"}


def _is_model(t) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _type(ann) -> str:
    origin, args = get_origin(ann), get_args(ann)
    if origin is Literal:
        return " or ".join(dict.fromkeys(_type(type(a)) for a in args))
    if origin in (Union, types.UnionType):
        parts = [a for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(_type(a) for a in parts))
        return text + (" or null" if len(parts) < len(args) else "")
    if origin is list:
        item = "mappings" if _is_model(args[0]) else _type(args[0])
        return f"list of ({item})" if " or " in item else f"list of {item}"
    if origin is dict:
        return f"mapping of {_type(args[0])} to " + ("mapping" if _is_model(args[1]) else _type(args[1]))
    return "section" if _is_model(ann) else _TYPES.get(ann, getattr(ann, "__name__", str(ann)))


def _literals(ann) -> list:
    if get_origin(ann) is Literal:
        return list(get_args(ann))
    return [v for a in get_args(ann) for v in _literals(a)]


def _plain(v):
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json", exclude_defaults=True)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v


def _value(v) -> str:
    v = _plain(v)
    return v if isinstance(v, str) and v else json.dumps(v)


def _doc(obj) -> str:
    return " ".join((getattr(obj, "__doc__", None) or "").split())


def _bounds(metadata) -> list[str]:
    b = {k: getattr(m, k) for m in metadata for k in ("ge", "gt", "le", "lt") if getattr(m, k, None) is not None}
    lo, hi = b.get("ge", b.get("gt")), b.get("le", b.get("lt"))
    if lo is not None and hi is not None:
        return [f"{'[' if 'ge' in b else '('}{lo}, {hi}{']' if 'le' in b else ')'}"]
    return [f"{op} {b[k]}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if k in b]


def _allowed(model, name: str, info) -> str:
    parts = []
    if lits := _literals(info.annotation):
        parts.append("one of " + ", ".join(f"`{_value(v)}`" for v in lits))
    parts += _bounds(info.metadata)
    parts += [f"matches `{m.pattern}`" for m in info.metadata if getattr(m, "pattern", None)]
    parts += [_doc(d.func) for d in model.__pydantic_decorators__.field_validators.values()
              if name in d.info.fields or "*" in d.info.fields]
    return "; ".join(p for p in parts if p)


@dataclass
class Row:
    key: str
    type: str
    default: str
    allowed: str
    description: str


def rows(model, prefix: str, checks: list[str], long: dict[str, Any]) -> Iterator[Row]:
    """One row per field of `model` (dotted under `prefix`), nested sections and the items of lists and
    mappings of sections after their field; the section's own checks go to `checks`, long defaults to `long`."""
    validators = model.__pydantic_decorators__.model_validators.values()
    checks += [f"`{prefix.rstrip('.')}`: {_doc(d.func)}" for d in validators]
    for name, info in model.model_fields.items():
        key, ann = prefix + name, info.annotation
        default = ("required" if info.is_required() else
                   _plain(info.default_factory() if info.default_factory else info.default))
        shown = "-" if _is_model(ann) else default if default == "required" else _value(default)
        if len(shown) > 60:
            long[key], shown = default, "see below"
        about = " ".join(filter(None, [info.description, _doc(ann) if _is_model(ann) else ""]))
        yield Row(key, _type(ann), shown, _allowed(model, name, info), about)
        inner = [a for a in (ann, *get_args(ann)) if _is_model(a)]
        for sub in inner:
            sub_prefix = (f"{key}." if sub is ann else f"{key}[]." if get_origin(ann) is list else f"{key}.<key>.")
            yield from rows(sub, sub_prefix, checks, long)


def _cell(text: str) -> str:
    """A table cell: pipes escaped; outside code spans, a `<` that would open an HTML tag too."""
    parts = str(text).replace("\n", " ").split("`")
    parts = [p if i % 2 else re.sub(r"<(?=[A-Za-z/])", "&lt;", p) for i, p in enumerate(parts)]
    return "`".join(parts).replace("|", "\\|")


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in r) + " |" for r in body]


INTRO = f"""# Configuration reference

Generated from `genre_lib/config/` by `{COMMAND}`: do not edit it by hand.
`python -m genre_lib.config --check` and `tests/test_config_reference.py` fail when it is stale.

A profile is one YAML file (`configs/*.yaml`) of the sections below; a key left out takes its default.
Every job takes `--set section.key=value` overrides (the value is read as YAML, except for a string key,
which takes it as written), and so does the DAG's trigger form. An unknown key or an invalid value is
refused before any work starts, with a message naming the key. Relative paths (`lake.root`, `data.path`,
`publish.sqlite_path`) are relative to the project root. The resolved config is logged to MLflow with
every run; `PipelineConfig.hash()` identifies it.
"""


def reference() -> str:
    """The text of docs/configuration.md."""
    fields = PipelineConfig.model_fields
    out = [INTRO, "Sections: " + ", ".join(f"[`{n}`](#{n})" for n in fields) + ".", ""]
    for name, info in fields.items():
        checks: list[str] = []
        long: dict[str, Any] = {}
        body = [[f"`{r.key}`", r.type, r.default if r.default in ("-", "see below", "required") else f"`{r.default}`",
                 r.allowed, r.description] for r in rows(info.annotation, f"{name}.", checks, long)]
        out += [f"## {name}", "", " ".join(filter(None, [info.description, _doc(info.annotation)])), ""]
        out += _table(["key", "type", "default", "allowed", "description"], body) + [""]
        for key, value in long.items():
            out += [f"Default of `{key}`:", "", "```yaml", yaml.safe_dump(value, sort_keys=False).rstrip(), "```", ""]
        if checks:
            out += ["Checks: " + _cell("; ".join(checks)) + ".", ""]
    whole = [_doc(d.func) for d in PipelineConfig.__pydantic_decorators__.model_validators.values()]
    out += ["## Checks across sections", ""] + [f"- {_cell(c)}" for c in whole] + [""]
    out += ["## Moved keys", "", "An old key, in a profile, a `--set` override, an A/B variant's overrides or "
            "`tuning.space`, is refused with a message naming its new place (`genre_lib.config.moved.MOVED`).", ""]
    out += _table(["old key", "new key"], [[f"`{old}`", f"`{new}`"] for old, new in MOVED.items()]) + [""]
    out += ["## Environment variables", "",
            "Every `GENRE_*` variable the project reads (`genre_lib.config.reference.ENV_VARS`). "
            "`tests/test_config_reference.py` fails when `genre_lib/`, `jobs/`, `dags/`, the Makefile or `docker/` "
            "mention one that is not listed here.", ""]
    for title, envs in ENV_VARS.items():
        out += [f"### {title}", ""]
        out += _table(["variable", "default", "read by", "what it does"],
                      [[f"`{e.name}`", e.default, e.read_by, e.does] for e in envs]) + [""]
    return "\n".join(out).rstrip() + "\n"
