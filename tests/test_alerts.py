"""The night's verdict and its one alert (genre_lib/orchestration/alerts.py), received by a real SMTP
server (aiosmtpd) and a real HTTP server on 127.0.0.1: a failed task, a refused publish, a blocking
check, a warning and a missed deadline each send exactly one alert naming the night, what went wrong
with its numbers and the links; a healthy night sends none; a night that was not published fails."""
import asyncio
import email
import json

import pandas as pd
import pytest
from aiosmtpd.controller import Controller

from genre_lib.checks.figures import COLUMNS
from genre_lib.config.settings import load_config
from genre_lib.lake.storage import Lake
from genre_lib.orchestration import alerts, failures
from genre_lib.orchestration.tracking import parent_run, stage_run
from tests.airflow_cluster import JsonInbox, free_port

DS = "2026-11-22"
RUN = "scheduled__2026-11-22T02:00:00+00:00"


class _Inbox:
    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture()
def inbox(monkeypatch):
    box = _Inbox()
    ctrl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctrl.start()
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": ctrl.port,
            "extra": {"to": "ops@example.com", "from_email": "genre@example.com", "disable_ssl": True,
                      "disable_tls": True}}
    monkeypatch.setenv("AIRFLOW_CONN_GENRE_NOTIFY", json.dumps(conn))
    monkeypatch.setenv("GENRE_NOTIFIER_CONN", "genre_notify")
    yield box
    ctrl.stop()


def body(mail) -> str:
    part = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    return part.get_payload(decode=True).decode()


@pytest.fixture()
def night(tmp_path, mlflow_uri):
    """A config, its lake, and the night's parent run with a finished child run per stage."""
    cfg = load_config("configs/default.yaml", [f"lake.root={tmp_path / 'lake'}", f"mlflow.tracking_uri={mlflow_uri}"])
    parent_run(cfg, RUN, DS)

    def finish(*stages):
        for s in stages:
            with stage_run(cfg, s, RUN, DS):
                pass
    return cfg, Lake(cfg.lake_root), finish


def decide(lake, publish: bool, reason: str):
    lake.write_json("publish_log", DS, "decision.json", {"decision": {"publish": publish, "reason": reason},
                                                         "result": {"published": int(publish)}}, {"run_id": RUN, "config_hash": "h"})


def checks(lake, table, *rows):
    recs = pd.DataFrame([{"night": DS, "check": c, "scope": "inputs", "value": v, "lower": lo, "upper": None,
                          "passed": ok, "severity": sev, "message": msg, "detail": None}
                         for c, v, lo, ok, sev, msg in rows], columns=COLUMNS)
    lake.write_pandas(table, DS, recs, {"run_id": RUN, "config_hash": "h"})


def finish_run(cfg, stages):
    return alerts.finish_run({"config": "configs/default.yaml"}, RUN, stages,
                             [f"lake.root={cfg.lake_root}", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}"], DS)


def test_a_healthy_night_is_green_and_silent(night, inbox):
    cfg, lake, finish = night
    finish("check_inputs", "publish")
    checks(lake, "input_checks", ("volume", 1000.0, 500.0, True, "blocking", "ok"))
    decide(lake, True, "ok: blend ndcg@10 0.3000 >= popularity 0.1000")
    assert finish_run(cfg, ["check_inputs", "publish"]) == "FINISHED"
    assert inbox.mails == []


def test_a_refused_publish_alerts_once_and_is_not_green(night, inbox):
    cfg, lake, finish = night
    finish("publish")
    decide(lake, False, "refused: blend ndcg@10 0.0500 < popularity 0.1000")
    with pytest.raises(alerts.NightNotGreen, match="not published"):
        finish_run(cfg, ["publish"])
    (mail,) = inbox.mails
    assert mail["Subject"] == f"genre genre_nightly night {DS}: not published" and mail["To"] == "ops@example.com"
    text = body(mail)
    assert "refused: blend ndcg@10 0.0500 &lt; popularity 0.1000" in text and RUN in text
    assert f"/dags/genre_nightly/runs/{RUN.replace(':', '%3A').replace('+', '%2B')}" in text
    assert "/#/experiments/" in text
    import mlflow

    parent = mlflow.get_run(parent_run(cfg, RUN, DS))
    assert parent.info.status == "FAILED" and parent.data.tags["outcome"] == "refused"
    assert parent.data.tags["alert_sent"] == "true"


def test_a_blocking_check_alerts_once_with_its_numbers(night, inbox):
    cfg, lake, finish = night
    finish("check_inputs", "publish")
    checks(lake, "input_checks", ("volume", 90.0, 500.0, False, "blocking",
                                  "clean rows 90 is 0.09x the median 1000 of 7 trailing nights"))
    decide(lake, False, "refused: blocking check volume: clean rows 90 is 0.09x the median 1000")
    with pytest.raises(alerts.NightNotGreen):
        finish_run(cfg, ["check_inputs", "publish"])
    (mail,) = inbox.mails
    assert "Blocking checks failed:" in body(mail) and "0.09x the median 1000" in body(mail)


def test_a_warning_alerts_once_and_the_night_stays_green(night, inbox):
    cfg, lake, finish = night
    finish("check_outputs", "publish")
    checks(lake, "output_checks", ("genre_mix_drift", 0.4, None, False, "warning", "PSI 0.4 > 0.25"))
    decide(lake, True, "ok")
    assert finish_run(cfg, ["check_outputs", "publish"]) == "FINISHED"
    (mail,) = inbox.mails
    assert mail["Subject"].endswith("published with warnings") and "PSI 0.4 &gt; 0.25" in body(mail)


def test_a_retried_stage_is_a_warning(night, inbox):
    cfg, lake, finish = night
    finish("publish", "publish")  # the first try was killed (its run never finished), the retry went through
    decide(lake, True, "ok")
    assert finish_run(cfg, ["publish"]) == "FINISHED"
    (mail,) = inbox.mails
    assert "publish: finished on try 2" in body(mail)


def test_a_failed_task_alerts_once_from_the_verdict(night, inbox):
    cfg, lake, finish = night
    from mlflow.tracking import MlflowClient

    parent = parent_run(cfg, RUN, DS)
    MlflowClient().set_tag(parent, "failed_tasks", "embed_texts")
    MlflowClient().set_tag(parent, "error.embed_texts", "error: CUDA out of memory (tried 2.1 GiB)")
    finish("check_inputs")
    with pytest.raises(alerts.NightNotGreen):
        finish_run(cfg, ["check_inputs", "embed_texts", "publish"])
    (mail,) = inbox.mails
    assert "failed (embed_texts)" in mail["Subject"] and "CUDA out of memory (tried 2.1 GiB)" in body(mail)


class _Ti:
    def __init__(self, task_id, dag_id="genre_nightly"):
        self.task_id, self.dag_id, self.run_id, self.try_number = task_id, dag_id, RUN, 1


def _dag(dag_id, *task_ids):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None) as dag:
        for t in task_ids:
            EmptyOperator(task_id=t)
    return dag


def test_task_failure_callbacks_leave_the_alert_to_the_verdict(inbox, monkeypatch):
    monkeypatch.setattr(failures, "record_failure", lambda ctx: "recorded")
    nightly = _dag("genre_nightly", "resolve_run", "embed_texts", "finish_run")
    failures.on_task_failure({"ti": _Ti("embed_texts"), "dag": nightly, "run_id": RUN, "exception": RuntimeError("x")})
    failures.on_task_failure({"ti": _Ti("finish_run"), "dag": nightly, "run_id": RUN,
                              "exception": alerts.NightNotGreen("told already")})
    assert inbox.mails == []
    # the verdict task failing on its own, and a DAG without a verdict: told by the callback
    failures.on_task_failure({"ti": _Ti("finish_run"), "dag": nightly, "run_id": RUN,
                              "exception": RuntimeError("MLflow is down")})
    failures.on_task_failure({"ti": _Ti("tune", "genre_tuning"), "dag": _dag("genre_tuning", "tune"), "run_id": RUN,
                              "exception": RuntimeError("study failed")})
    assert [m["Subject"] for m in inbox.mails] == ["genre genre_nightly night : failed (finish_run)",
                                                   "genre genre_tuning night : failed (tune)"]
    assert "MLflow is down" in body(inbox.mails[0]) and "study failed" in body(inbox.mails[1])


def test_a_missed_deadline_alerts_once(inbox):
    run = {"dag_id": "genre_nightly", "dag_run_id": RUN, "conf": {"run_date": DS}, "queued_at": "2026-11-23T02:00:00",
           "state": "running"}
    asyncio.run(alerts.deadline_missed(context={"dag_run": run}, minutes=90))
    # a run that failed early keeps its deadline in Airflow: its verdict told it, the deadline does not
    asyncio.run(alerts.deadline_missed(context={"dag_run": {**run, "state": "failed"}}, minutes=90))
    (mail,) = inbox.mails
    assert mail["Subject"] == f"genre genre_nightly night {DS}: failed (deadline)"
    assert "not done 90 minutes after it was queued" in body(mail)


def test_a_webhook_connection_gets_the_same_alert_as_json(monkeypatch):
    inbox = JsonInbox()
    monkeypatch.setenv("AIRFLOW_CONN_GENRE_HOOK", inbox.connection("hook"))
    monkeypatch.setenv("GENRE_NOTIFIER_CONN", "genre_hook")
    try:
        v = alerts.Verdict("genre_nightly", RUN, DS, refused="refused: {{ not a template }} 0.05 < 0.1")
        assert alerts.send(v, {})
    finally:
        inbox.stop()
    (got,) = inbox.received
    assert got["outcome"] == "refused" and got["ds"] == DS and "{{ not a template }} 0.05 < 0.1" in got["text"]


def test_without_a_connection_nothing_is_sent_and_nothing_raises(monkeypatch, caplog):
    monkeypatch.delenv("GENRE_NOTIFIER_CONN", raising=False)
    assert not alerts.send(alerts.Verdict("genre_nightly", RUN, DS, refused="x"), {})
    monkeypatch.setenv("GENRE_NOTIFIER_CONN", "no_such_connection")
    assert not alerts.send(alerts.Verdict("genre_nightly", RUN, DS, refused="x"), {})
    assert "could not notify through connection no_such_connection" in caplog.text
