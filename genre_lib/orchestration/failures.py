"""What happens when a task of a genre DAG fails for good: the failure recorded in the night's MLflow
parent run (tag and log tail) and, when GENRE_NOTIFIER_CONN names a connection, a notification."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

from airflow.sdk import BaseNotifier

log = logging.getLogger("genre.dag")


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

    from genre_lib.config.settings import load_config
    from genre_lib.orchestration.tracking import parent_run, tracking_uri

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
