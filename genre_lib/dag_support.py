"""What the DAG files are made of, so that they stay wiring only: one Airflow Asset per table with
the task that commits it, pools, timeouts and retries, the trigger form, each task's doc, the
stage selection, the asset events' extra, the failure callback, and the example consumer's check.

Assets are `genre://lake/<table>` (name `genre.<table>`): the lake root is chosen per run (profile,
`lake.root` override, an s3a:// lake on a cluster) while an Asset URI is fixed when the DAG file is
parsed, so a `file://<root>/<table>` URI would name the default lake even for a night written
elsewhere. Each event's extra carries the real partition instead: {table, ds, run_id, rows, path,
lake_root, committed_at}, read from the partition's `_SUCCESS` manifest.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Optional

from airflow.sdk import Asset, BaseNotifier, Param

from genre_lib.tables import STAGES, TABLES, Lake, outputs

log = logging.getLogger("genre.dag")


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
SPARK_POOL, GPU_POOL = "spark", "gpu"

# minutes, times GENRE_TIMEOUT_SCALE (default 1) for catalogues far above the profiles'
TIMEOUT_MIN = {"resolve_run": 10, "clean_interactions": 60, "genre_weights": 60, "embed_texts": 120,
               "train_classifier": 120, "recommend": 120, "evaluate": 60, "publish": 30, "finish_run": 10,
               "tune": 480}
DEFAULT_TIMEOUT_MIN = 120
DAGRUN_TIMEOUT_H = 12  # a night must be done well before the next one starts


def _scale() -> float:
    return float(os.environ.get("GENRE_TIMEOUT_SCALE", "1"))


def timeout(task_id: str) -> timedelta:
    return timedelta(minutes=TIMEOUT_MIN.get(task_id, DEFAULT_TIMEOUT_MIN) * _scale())


def dagrun_timeout() -> timedelta:
    return timedelta(hours=DAGRUN_TIMEOUT_H * _scale())


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


# --- the trigger form --------------------------------------------------------------------------
def nightly_params() -> dict[str, Param]:
    """Checked by the form (JSON schema) and again by pipeline.resolve_run (CLI and REST API)."""
    from genre_lib.pipeline import profile_choices

    stages = list(STAGES)
    return {
        "run_date": Param(None, type=["null", "string"], format="date", title="Run date",
                          description="Night to process (YYYY-MM-DD); empty: the run's logical date."),
        "config": Param("configs/default.yaml", type="string", enum=profile_choices(), title="Config profile",
                        description="A YAML profile of configs/ (or configs/tuned/)."),
        "overrides": Param([], type="array", items={"type": "string"}, title="Overrides",
                           description="dotted.key=value lines, e.g. recommend.top_n=50"),
        "stages": Param(stages, type="array", items={"type": "string", "enum": stages}, examples=stages,
                        minItems=1, uniqueItems=True, title="Stages",
                        description="Run only these (e.g. recommend + evaluate to redo the tail); the others "
                                    "are skipped and their committed partitions are read as they are."),
        "full_refresh": Param(False, type="boolean", title="Re-embed every item",
                              description="encoder.full_refresh=true: ignore the embedding cache of earlier nights."),
    }


def tuning_params() -> dict[str, Param]:
    """genre_tuning's form; empty values keep the profile's `tuning.*`. Checked again by
    tuning.resolve (CLI and REST API)."""
    from genre_lib.pipeline import profile_choices

    return {
        "config": Param("configs/default.yaml", type="string", enum=profile_choices(), title="Starting profile",
                        description="Its `tuning` section declares the search space; its values are the start."),
        "sampler": Param(None, type=["null", "string"], enum=[None, "tpe", "random"], title="Sampler",
                         description="tpe (Bayesian, Optuna's TPE) or random; empty: the profile's."),
        "n_trials": Param(None, type=["null", "integer"], minimum=1, title="Trials",
                          description="Trials of the study in all (a resumed study runs the rest); empty: the profile's."),
        "timeout_minutes": Param(None, type=["null", "number"], exclusiveMinimum=0, title="Timeout (minutes)",
                                 description="Stop starting trials after this long; empty: none."),
        "protocol": Param(None, type=["null", "string"], enum=[None, "temporal", "stratified"], title="Protocol",
                          description="How train/validation/test are split; empty: the profile's eval.protocol."),
        "metric": Param("ndcg@10", type="string", pattern="^(ndcg|precision|recall|map|hit_rate)@[1-9][0-9]*$",
                        title="Metric", description="Maximised on the validation split."),
        "study_name": Param(None, type=["null", "string"], title="Study name",
                            description="The same name resumes a study; empty: <profile>-<protocol>-<sampler>."),
        "promote": Param(False, type="boolean", title="Promote the best profile",
                         description="Write it to configs/tuned/<profile>-<date>.yaml, offered by the nightly's form."),
        "run_date": Param(None, type=["null", "string"], format="date", title="Night",
                          description="Tune on the lake history of this night; empty: the newest committed one."),
        "overrides": Param([], type="array", items={"type": "string"}, title="Overrides",
                           description="dotted.key=value lines applied to the starting profile"),
    }


# --- per-task docs and settings ------------------------------------------------------------------
# Lake tables each stage reads (the writes come from tables.TABLES). The end-to-end test checks the
# partitions a run really read (its MLflow input datasets) against this: a stage that starts reading
# another table must be added here, or the test names it.
INPUT_TABLES = {
    "clean_interactions": ["interactions_clean"],  # only which days are committed (catch-up)
    "genre_weights": ["interactions_clean", "items_clean", "genre_vocab"],
    "embed_texts": ["items_clean", "item_embeddings"],
    "train_classifier": ["items_clean", "item_embeddings", "genre_vocab"],
    "recommend": ["interactions_clean", "items_clean", "user_genre_weights", "item_genre_scores", "item_genres",
                  "item_embeddings"],
    "evaluate": ["interactions_clean", "items_clean", "genre_vocab", "item_genre_scores", "item_genres",
                 "item_embeddings", "recommendations"],  # recommendations: for the HTML report
    "publish": ["evaluation", "recommendations", "items_clean"],
}
OTHER_INPUTS = {
    "clean_interactions": "raw interaction files and the item catalogue under `data.path` (nights D - "
                          "`clean.late_days` .. D; on a new lake every earlier raw day)",
    "train_classifier": "the `genre-classifier` champion in the MLflow model registry",
    "recommend": "with `rerank.retrain_days` > 1, the `genre-reranker` versions in the MLflow model registry",
    "publish": "the serving store's current version (`publish.store`)",
}


def task_doc(task_id: str) -> str:
    if task_id == "resolve_run":
        return ("Reads the trigger form (or the schedule's defaults) and the profile it names.\n\n"
                "Writes the job arguments, the selected stages and the lake root to XCom, and opens the "
                "night's MLflow parent run. Refuses bad values with the field named, before any work.")
    if task_id == "finish_run":
        return ("Reads the MLflow child runs of this DAG run.\n\n"
                "Writes the parent run's status (FINISHED when every selected stage finished) and tags.")
    tables = ", ".join(f"`{t}`" for t in INPUT_TABLES.get(task_id, []))
    reads = [f"{tables} (committed partitions up to the night)"] if tables else []
    if task_id in OTHER_INPUTS:
        reads.insert(0, OTHER_INPUTS[task_id])
    writes = [f"`<lake.root>/{t}/ds=<run_date>/` (Asset `genre://lake/{t}`)" for t in outputs(task_id)]
    return (f"Runs `jobs/{task_id}.py` (its MLflow child run logs the partitions it read as input datasets).\n\n"
            "**Reads:** " + ("; ".join(reads) or "-") + "\n\n**Writes:** " + "; ".join(writes) +
            "\n\nSkipped when not among the run's `stages`.")


def stage_task(stage: str, pool: str) -> dict:
    """Operator arguments of a stage task: its pool, timeout, doc, the assets of the tables it
    commits, and the hooks that skip an unselected stage and annotate the asset events."""
    return {"pool": pool, "execution_timeout": timeout(stage), "doc_md": task_doc(stage),
            "outlets": [table_asset(t) for t in outputs(stage)],
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


# --- failures ----------------------------------------------------------------------------------
def task_log_tail(ti, lines: int = 200) -> tuple[Optional[Path], str]:
    """The last lines of this try's task log file (Airflow's default layout under
    [logging] base_log_folder); (None, "") when there is none (`airflow dags test` logs to the console)."""
    from airflow.configuration import conf

    folder = Path(conf.get("logging", "base_log_folder")) / f"dag_id={ti.dag_id}" / f"run_id={ti.run_id}" / \
        f"task_id={ti.task_id}"
    found = sorted(folder.glob(f"**/attempt={ti.try_number}.log")) or \
        sorted(folder.glob("**/attempt=*.log"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None, ""
    out = []
    for line in found[-1].read_text(errors="replace").splitlines()[-lines:]:
        try:  # the supervisor writes JSON lines
            rec = json.loads(line)
            out.append(f"{rec.get('timestamp', '')} {rec.get('level', '')} {rec.get('event', '')}".strip())
        except (ValueError, AttributeError):
            out.append(line)
    return found[-1], "\n".join(out) + "\n"


def record_failure(context) -> str:
    """Tag the night's MLflow parent run with `failed_task` (the first task that failed: the cause;
    finish_run fails after it) and the running list `failed_tasks`, and attach the end of the task
    log (without a log file: the exception) as an artifact."""
    import traceback

    from mlflow.tracking import MlflowClient

    from genre_lib.config import load_config
    from genre_lib.tracking import parent_run, tracking_uri

    ti, params = context["ti"], dict(context["params"])
    resolved = ti.xcom_pull(task_ids="resolve_run") or {}
    cfg = load_config(params.get("config") or "configs/default.yaml",
                      resolved.get("overrides", params.get("overrides") or []))
    run_date = resolved.get("run_date") or params.get("run_date") or ""
    parent = parent_run(cfg, context["run_id"], run_date, ti.dag_id)
    client = MlflowClient(tracking_uri(cfg))
    tags = client.get_run(parent).data.tags
    if "failed_task" not in tags:
        client.set_tag(parent, "failed_task", ti.task_id)
    client.set_tag(parent, "failed_tasks", ",".join(filter(None, [tags.get("failed_tasks"), ti.task_id])))
    path, tail = task_log_tail(ti)
    exc = context.get("exception")
    text = (f"task {ti.task_id}, try {ti.try_number}, run {context['run_id']}\n"
            f"log: {path or 'no task log file (airflow dags test logs to the console)'}\n")
    if exc is not None:
        text += "exception: " + "".join(traceback.format_exception(exc)[-20:]) + "\n"
    text += tail
    artifact = f"failures/{ti.task_id}.try{ti.try_number}.log"
    client.log_text(parent, text, artifact)
    return artifact


class WebhookNotifier(BaseNotifier):
    """POSTs {"text": ..., "dag_id", "run_id", "task_id"} as JSON to an http(s) connection's URL
    (host, port, schema; `endpoint` in the extra)."""

    template_fields = ("text",)

    def __init__(self, conn_id: str, text: str):
        super().__init__()
        self.conn_id, self.text = conn_id, text

    def notify(self, context) -> None:
        import urllib.request

        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.conn_id)
        scheme = "https" if conn.conn_type == "https" or conn.schema == "https" else "http"
        port = f":{conn.port}" if conn.port else ""
        url = f"{scheme}://{conn.host}{port}/{str(conn.extra_dejson.get('endpoint', '')).lstrip('/')}"
        ti = context["ti"]
        body = json.dumps({"text": self.text, "dag_id": ti.dag_id, "run_id": context["run_id"],
                           "task_id": ti.task_id}).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10):
            pass


def failure_notifier(conn_id: str) -> BaseNotifier:
    """A notifier for the connection's type: smtp (the SMTP provider's, to the extra's `to`), or
    http/https (WebhookNotifier)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    text = "genre: task {{ ti.task_id }} of {{ dag.dag_id }} {{ run_id }} failed (try {{ ti.try_number }})"
    if conn.conn_type == "smtp":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return SmtpNotifier(to=conn.extra_dejson.get("to") or conn.login, smtp_conn_id=conn_id, subject=text,
                            html_content=text)
    if conn.conn_type in ("http", "https"):
        return WebhookNotifier(conn_id, text)
    raise ValueError(f"notifier connection {conn_id}: unsupported conn_type {conn.conn_type!r} (smtp, http, https)")


def on_task_failure(context) -> None:
    """Every task's on_failure_callback (after its last retry). Records the failure in MLflow and,
    when env GENRE_NOTIFIER_CONN names a connection, notifies through it. Never raises: a broken
    tracking store or notifier must not hide the task's own error."""
    try:
        log.warning("recorded in the MLflow parent run: %s", record_failure(context))
    except Exception:
        log.exception("could not record the failure in MLflow")
    conn_id = os.environ.get("GENRE_NOTIFIER_CONN", "").strip()
    if conn_id:
        try:
            failure_notifier(conn_id)(context)
        except Exception:
            log.exception("could not notify through connection %s", conn_id)


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


if __name__ == "__main__":  # python -m genre_lib.dag_support pools
    if sys.argv[1:] != ["pools"]:
        raise SystemExit("usage: python -m genre_lib.dag_support pools")
    print("pools:", ensure_pools())
