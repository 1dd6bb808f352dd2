"""What happens when a task of a genre DAG fails for good: the failure recorded in the night's MLflow
parent run (tags, the error and the log tail), which the night's verdict (alerts.py) reads."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional

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
    exc = context.get("exception")
    client.set_tag(parent, f"error.{ti.task_id}", error_line(ti, exc))
    path, tail = task_log_tail(ti)
    text = (f"task {ti.task_id}, try {ti.try_number}, run {context['run_id']}\n"
            f"log: {path or 'no task log file (airflow dags test logs to the console)'}\n")
    if exc is not None:
        text += "exception: " + "".join(traceback.format_exception(exc)[-20:]) + "\n"
    text += tail
    artifact = f"failures/{ti.task_id}.try{ti.try_number}.log"
    client.log_text(parent, text, artifact)
    return artifact


_ERROR = re.compile(r"(\b\w+(?:Error|Exception): .+|\berror: .+)$")


def error_line(ti, exc) -> str:
    """The task's error in a line: the job's own (the last `SomeError: ...` or `error: ...` line of its
    task log, what a job prints on stderr) when the operator only says a command failed, else the
    exception."""
    _, tail = task_log_tail(ti)
    said = [m.group(1) for m in map(_ERROR.search, tail.splitlines()) if m]
    text = str(exc) if exc is not None else ""
    if said and (not text or "exit code" in text.lower() or "returned non-zero" in text.lower()
                 or "non-zero exit" in text.lower()):
        text = said[-1].strip()
    return (text or "failed")[:480]


def on_task_failure(context) -> None:
    """Every task's on_failure_callback (after its last retry). Records the failure in MLflow. The
    alert is the night's verdict's (alerts.py, sent by finish_run); this callback notifies only where
    no verdict will: a DAG without a verdict task (genre_tuning), and the verdict task failing on its
    own. Never raises: a broken tracking store or notifier must not hide the task's own error."""
    from genre_lib.orchestration.alerts import VERDICT_TASK, NightNotGreen, Verdict, send

    try:
        log.warning("recorded in the MLflow parent run: %s", record_failure(context))
    except Exception:
        log.exception("could not record the failure in MLflow")
    try:
        ti, dag = context["ti"], context.get("dag")
        exc = context.get("exception")
        has_verdict = dag is not None and VERDICT_TASK in dag.task_ids
        if has_verdict and (ti.task_id != VERDICT_TASK or isinstance(exc, NightNotGreen)):
            return
        ds = str((context.get("params") or {}).get("run_date") or context.get("ds") or "")
        send(Verdict(ti.dag_id, context["run_id"], ds, failed=[f"{ti.task_id}: {error_line(ti, exc)}"]), context)
    except Exception:
        log.exception("could not notify the failure")
