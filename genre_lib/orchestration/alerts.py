"""The night's verdict and its one alert.

A night of genre_nightly is told about once, by its last task (finish_run), through an Airflow
notifier on the connection GENRE_NOTIFIER_CONN names: the smtp provider's SmtpNotifier for an smtp
connection, the http provider's HttpNotifier (a JSON POST) for an http(s) one. The verdict gathers
what went wrong: tasks that failed (with their error), a publish the gate refused (with its numbers),
failed blocking checks, failed warning checks. A night with any but warnings is not green: finish_run
fails, and with it the DAG run. A night that misses its deadline is told by the DAG's Deadline Alert
(dag_support.deadline). Per-task failure callbacks record in MLflow but do not notify, so one bad
night is one alert.
"""
from __future__ import annotations

import html
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

log = logging.getLogger("genre.dag")
VERDICT_TASK = "finish_run"


class NightNotGreen(RuntimeError):
    """finish_run's error for a night that failed, was refused or stopped by a blocking check; its alert
    has been sent."""


@dataclass
class Verdict:
    dag_id: str
    run_id: str
    ds: str
    failed: list[str] = field(default_factory=list)      # "<task>: <error>"
    refused: Optional[str] = None                        # the gate's reason
    blocking: list[str] = field(default_factory=list)    # failed blocking checks
    warnings: list[str] = field(default_factory=list)    # failed warning checks
    published: Optional[bool] = None                     # None: publish did not run
    links: dict = field(default_factory=dict)

    @property
    def green(self) -> bool:
        return not (self.failed or self.refused or self.blocking)

    @property
    def outcome(self) -> str:
        if self.failed:
            return "failed"
        if self.refused or self.blocking:
            return "refused"
        return "published" if self.published else "done"

    def subject(self) -> str:
        what = {"failed": f"failed ({', '.join(f.split(':')[0] for f in self.failed)})",
                "refused": "not published", "published": "published with warnings",
                "done": "done with warnings"}[self.outcome]
        return f"genre {self.dag_id} night {self.ds}: {what}"

    def text(self) -> str:
        lines = [self.subject(), f"run {self.run_id}"]
        for title, items in (("Failed tasks", self.failed), ("Publish refused", [self.refused] if self.refused else []),
                             ("Blocking checks failed", self.blocking), ("Warnings", self.warnings)):
            if items:
                lines += ["", f"{title}:", *(f"- {i}" for i in items)]
        lines += ["", *(f"{k}: {v}" for k, v in self.links.items())]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"dag_id": self.dag_id, "run_id": self.run_id, "ds": self.ds, "outcome": self.outcome,
                "green": self.green, "failed": self.failed, "refused": self.refused, "blocking": self.blocking,
                "warnings": self.warnings, "published": self.published, "links": self.links}


def links(dag_id: str, run_id: str, experiment_id: str, parent: str) -> dict:
    """Where a person looks next: the DAG run in the Airflow UI and the parent run in MLflow's."""
    from urllib.parse import quote

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
    mlflow_ui = os.environ.get("GENRE_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")
    return {"airflow": f"{base}/dags/{dag_id}/runs/{quote(run_id, safe='')}",
            "mlflow": f"{mlflow_ui}/#/experiments/{experiment_id}/runs/{parent}"}


def notifier(conn_id: str, verdict: Verdict):
    """The Airflow notifier for the connection's type, carrying the verdict."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    text = verdict.text()
    # a notifier renders its fields as Jinja templates: the text is data, not a template
    raw = lambda s: "{% raw %}" + s + "{% endraw %}"  # noqa: E731
    if conn.conn_type == "smtp":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        extra = conn.extra_dejson
        return SmtpNotifier(to=extra.get("to") or conn.login, from_email=extra.get("from_email") or "genre@localhost",
                            smtp_conn_id=conn_id, subject=raw(verdict.subject()),
                            html_content=raw(f"<pre>{html.escape(text)}</pre>"))
    if conn.conn_type in ("http", "https"):
        from airflow.providers.http.notifications.http import HttpNotifier

        body = {k: raw(v) if isinstance(v, str) else v for k, v in
                {"subject": verdict.subject(), "text": text, "dag_id": verdict.dag_id, "run_id": verdict.run_id,
                 "ds": verdict.ds, "outcome": verdict.outcome}.items()}
        return HttpNotifier(http_conn_id=conn_id, endpoint=conn.extra_dejson.get("endpoint"), json=body,
                            headers={"Content-Type": "application/json"})
    raise ValueError(f"notifier connection {conn_id}: unsupported conn_type {conn.conn_type!r} (smtp, http, https)")


def send(verdict: Verdict, context: dict) -> bool:
    """Notify once through GENRE_NOTIFIER_CONN (nothing when unset); False when it could not be sent."""
    conn_id = os.environ.get("GENRE_NOTIFIER_CONN", "").strip()
    if not conn_id:
        log.warning("no GENRE_NOTIFIER_CONN: not sent: %s", verdict.subject())
        return False
    try:
        notifier(conn_id, verdict)(context)
    except Exception:
        log.exception("could not notify through connection %s: %s", conn_id, verdict.subject())
        return False
    log.info("alert sent through %s: %s", conn_id, verdict.subject())
    return True


def night_verdict(cfg, dag_id: str, run_id: str, ds: str, wanted: list[str], finished: set[str],
                  parent_tags: dict, tries: Optional[dict] = None) -> Verdict:
    """What went wrong with night `ds` of run `run_id`: from the MLflow parent run's failure tags
    (failures.record_failure), the stages that did not finish, the stages that needed more than one
    try (`tries`: stage -> child runs), and the lake's check records and publish decision of this run."""
    from genre_lib.checks.figures import failed
    from genre_lib.lake.storage import Lake

    v = Verdict(dag_id, run_id, ds)
    failed_tasks = [t for t in (parent_tags.get("failed_tasks") or "").split(",") if t and t != VERDICT_TASK]
    for task in dict.fromkeys(failed_tasks):
        v.failed.append(f"{task}: {parent_tags.get(f'error.{task}', 'failed')}")
    not_run = [s for s in wanted if s not in finished and s not in failed_tasks]
    if not_run and not v.failed:  # nothing recorded a failure, yet stages are missing (killed, timed out)
        v.failed.append(f"{', '.join(not_run)}: no finished run (killed, timed out, or an upstream failed)")
    for stage, n in sorted((tries or {}).items()):
        if n > 1 and stage in finished:
            v.warnings.append(f"{stage}: finished on try {n} (an earlier try died or failed, then Airflow retried it)")
    lake = Lake(cfg.lake_root)
    for table in ("input_checks", "output_checks"):
        if ds in lake.committed(table) and lake.manifest(table, ds).get("run_id") == run_id:
            records = lake.read_pandas(table, ds)
            v.blocking += failed(records, "blocking")
            v.warnings += failed(records, "warning")
    if ds in lake.committed("publish_log") and lake.manifest("publish_log", ds).get("run_id") == run_id:
        decision = lake.read_json("publish_log", ds, "decision.json")
        v.published = bool(decision["result"].get("published"))
        if not decision["decision"]["publish"]:
            v.refused = decision["decision"]["reason"]
    return v


def finish_run(params: dict, run_id: str, stages: Optional[list[str]] = None,
               overrides: Optional[list[str]] = None, run_date: str = "", dag_id: str = "genre_nightly",
               context: Optional[dict] = None) -> str:
    """Close the MLflow parent run and give the night its verdict (alerts.py): FINISHED when every
    selected stage (default: all) has a finished child run and neither the gate nor a blocking check
    stopped the night, else FAILED, and then this task fails too (the DAG run is not green). A night
    with anything to tell is told once. `overrides`: the run's resolved overrides (resolve_run's)."""
    from mlflow.tracking import MlflowClient

    from genre_lib.config.settings import load_config
    from genre_lib.lake.tables import STAGES
    from genre_lib.orchestration.tracking import child_runs, experiment_id, parent_run, tracking_uri

    wanted = list(STAGES) if stages is None else stages
    cfg = load_config(params.get("config") or "configs/default.yaml",
                      params.get("overrides") or [] if overrides is None else overrides)
    runs = child_runs(cfg, run_id)
    done = {r.data.tags.get("stage") for r in runs if r.info.status == "FINISHED"}
    tries: dict[str, int] = {}
    for r in runs:
        tries[r.data.tags.get("stage")] = tries.get(r.data.tags.get("stage"), 0) + 1
    client = MlflowClient(tracking_uri(cfg))
    parent = parent_run(cfg, run_id, run_date, dag_id)
    verdict = night_verdict(cfg, dag_id, run_id, run_date, wanted, done, client.get_run(parent).data.tags, tries)
    verdict.links = links(dag_id, run_id, experiment_id(cfg), parent)
    status = "FINISHED" if verdict.green else "FAILED"
    client.set_tag(parent, "stages_finished", ",".join(s for s in STAGES if s in done))
    client.set_tag(parent, "stages_selected", ",".join(wanted))
    client.set_tag(parent, "outcome", verdict.outcome)
    client.log_dict(parent, verdict.to_dict(), "verdict.json")
    client.set_terminated(parent, status)
    try:  # the night's figures over the nights in MLflow's charts; a failure here must not hide the verdict
        from genre_lib.checks.trends import log_night
        from genre_lib.lake.storage import Lake

        log_night(client, experiment_id(cfg), Lake(cfg.lake_root), run_date, cfg.publish.metric)
    except Exception:
        log.exception("could not log tonight's trends")
    if not verdict.green or verdict.warnings:
        client.set_tag(parent, "alert_sent", str(send(verdict, context or {})).lower())
    if not verdict.green:  # the DAG run must fail too: this task is its only leaf
        raise NightNotGreen(verdict.text())
    return status


async def deadline_missed(context=None, minutes: float = 0, **kwargs) -> None:
    """genre_nightly's Deadline Alert callback (run by the triggerer): the night still running
    `minutes` after it was queued is told once. A run that already ended (Airflow keeps the deadline
    of a failed run) was told by its verdict and is not told again."""
    import asyncio

    run = dict((context or {}).get("dag_run") or {})
    dag_id, run_id = run.get("dag_id") or "genre_nightly", run.get("dag_run_id") or run.get("run_id") or "?"
    if run.get("state") in ("success", "failed"):
        log.info("deadline of %s %s passed after the run ended (%s): its verdict told it", dag_id, run_id,
                 run.get("state"))
        return
    ds = str((run.get("conf") or {}).get("run_date") or run.get("logical_date") or "")[:10]
    v = Verdict(dag_id, run_id, ds, failed=[f"deadline: not done {minutes:g} minutes after it was queued "
                                            f"(queued {run.get('queued_at')}; GENRE_DEADLINE_MIN)"])
    v.links = {"airflow": links(dag_id, run_id, "", "")["airflow"]}
    await asyncio.to_thread(send, v, dict(context or {}))
