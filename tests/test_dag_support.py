"""The parts behind the DAG's lineage and failure handling, without Airflow running: the lake's read
recorder and the MLflow input datasets made from it, the failure hook, the task-log tail, the
consumer's check of a triggering event, the HTML report, the progress throttle."""
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from genre_lib.lake.reads import recording_reads
from genre_lib.lake.storage import SUCCESS, Lake

D1, D2 = "2026-11-21", "2026-11-22"


def _recs(user_rows: dict[str, int]) -> pd.DataFrame:
    """A recommendations frame with every column of the contract (whatever it holds today)."""
    import pyarrow as pa

    from genre_lib.lake.tables import schema

    rows = [(u, r + 1, f"i{r}") for u, n in user_rows.items() for r in range(n)]
    df = pd.DataFrame(rows, columns=["user_id", "rank", "item_id"])
    for f in schema("recommendations"):
        if f.name not in df:
            df[f.name] = "x" if f.type == pa.string() else 0.0
    return df.astype({"rank": "int32"})


@pytest.fixture()
def lake(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    for ds in (D1, D2):
        lake.write_pandas("recommendations", ds, _recs({"u1": 2, "u2": 2}), {"run_id": f"run-{ds}", "config_hash": "h"})
    return lake


def test_reads_are_recorded_once_with_the_manifest_hash(lake):
    lake.read_pandas("recommendations", D2)  # outside a recorder: nothing to note
    with recording_reads() as reads:
        lake.read_pandas("recommendations", D2)
        lake.read_pandas("recommendations", D2, ["user_id"])
        lake.spark_paths("recommendations", [D1, D2])
    assert [(r.table, r.ds) for r in reads] == [("recommendations", D2), ("recommendations", D1)]
    for r in reads:
        raw = (Path(lake.partition("recommendations", r.ds)) / SUCCESS).read_bytes()
        assert r.manifest_sha256 == hashlib.sha256(raw).hexdigest()
        assert (r.rows, r.producer_run_id, r.path) == (4, f"run-{r.ds}", lake.uri("recommendations", f"ds={r.ds}"))
    with recording_reads() as again:
        pass
    assert again == []


def test_recorded_reads_become_mlflow_input_datasets(lake, mlflow_uri):
    import mlflow

    from genre_lib.orchestration.tracking import log_inputs

    with recording_reads() as reads:
        lake.spark_paths("recommendations", [D1, D2])
    with mlflow.start_run() as run:
        assert log_inputs(reads) == 2
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    got = {i.dataset.name: (i.dataset.digest, json.loads(i.dataset.source)["uri"], {t.key: t.value for t in i.tags})
           for i in inputs}
    for r in reads:
        digest, uri, tags = got[f"recommendations/ds={r.ds}"]
        assert digest == r.manifest_sha256[:36] and uri == r.path
        assert tags["manifest_sha256"] == r.manifest_sha256 and tags["rows"] == "4"
        assert tags["mlflow.data.context"] == "input"


@pytest.mark.parametrize("setting, fails", [("embed_texts", True), (f"embed_texts@{D2}", True),
                                            (f"embed_texts@{D1}", False), ("recommend,embed_texts", True),
                                            ("recommend", False), ("", False)])
def test_fail_hook(monkeypatch, setting, fails):
    from genre_lib.orchestration.jobrun import fail_if_asked

    monkeypatch.setenv("GENRE_FAIL_STAGE", setting)
    if fails:
        with pytest.raises(RuntimeError, match="fails on request"):
            fail_if_asked("embed_texts", D2)
    else:
        fail_if_asked("embed_texts", D2)


def test_task_log_tail_reads_this_try(tmp_path, monkeypatch):
    from genre_lib.orchestration.failures import task_log_tail

    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(tmp_path))
    ti = SimpleNamespace(dag_id="genre_nightly", run_id="manual__x", task_id="recommend", try_number=2)
    folder = tmp_path / "dag_id=genre_nightly" / "run_id=manual__x" / "task_id=recommend"
    folder.mkdir(parents=True)
    (folder / "attempt=1.log").write_text("old try\n")
    lines = [json.dumps({"timestamp": "t", "level": "info", "event": f"line {i}"}) for i in range(300)]
    (folder / "attempt=2.log").write_text("\n".join([*lines, "plain text"]) + "\n")
    path, tail = task_log_tail(ti, lines=5)
    assert path == folder / "attempt=2.log"
    assert tail.splitlines() == ["t info line 296", "t info line 297", "t info line 298", "t info line 299",
                                 "plain text"]
    assert task_log_tail(SimpleNamespace(**{**vars(ti), "task_id": "evaluate"})) == (None, "")


def _event(extra: dict, minute: int):
    return SimpleNamespace(extra=extra, timestamp=datetime(2026, 11, 23, 2, minute, tzinfo=timezone.utc),
                           source_dag_id="genre_nightly", source_run_id=extra.get("run_id"))


def test_consumer_reads_the_newest_event_and_checks_the_partition(lake):
    from genre_lib.orchestration.dag_support import night_from_events, partition_extra

    old, new = partition_extra(lake, "recommendations", D1), partition_extra(lake, "recommendations", D2)
    night = night_from_events([_event(new, 5), _event(old, 1)])
    assert (night["ds"], night["run_id"], night["rows"], night["events"]) == (D2, f"run-{D2}", 4, 2)
    with pytest.raises(RuntimeError, match="changed since the event"):  # a rerun replaced the partition
        night_from_events([_event({**new, "run_id": "another-run"}, 5)])
    with pytest.raises(FileNotFoundError):
        night_from_events([_event({**new, "ds": "2026-11-30"}, 5)])
    with pytest.raises(ValueError, match="rows"):
        night_from_events([_event({k: v for k, v in new.items() if k != "rows"}, 5)])


def test_html_report_and_stable_metric_keys():
    from genre_lib.evaluation.html_report import genre_mix, metric_keys, render
    from genre_lib.protocol.metrics import METRICS

    payload = {"k": 10, "primary": "blend", "protocol": "temporal", "train_rows": 9, "test_rows": 3,
               "models": {"blend": {"ndcg@10": 0.3, "coverage@10": 0.5, "novelty@10": float("nan")},
                          "popularity": {"ndcg@10": 0.1}}}
    item_genres = pd.DataFrame({"item_id": ["i0", "i0", "i1"], "genre": ["Drama", "Comedy", "Drama"],
                                "score": [1.0, 1.0, 1.0]})
    recs = _recs({"u1": 2, "u2": 1})
    mix = genre_mix(recs, item_genres).set_index("genre")
    # slots: i0 twice (half Drama, half Comedy), i1 once (Drama) -> Drama 2/3, Comedy 1/3
    assert mix.loc["Drama", "recommendations"] == pytest.approx(2 / 3)
    assert mix.loc["Comedy", "catalogue"] == pytest.approx(0.25)
    html = render(payload, recs, item_genres, "Evaluation test")
    assert "3 rows for 2 users; rows per user: min 1, max 2." in html and "<svg" in html and "n/a" in html
    keys = metric_keys(payload)
    assert len(keys) == 2 * len(METRICS) and keys["blend.ndcg_at_10"] == 0.3
    assert pd.isna(keys["blend.novelty_at_10"]) and pd.isna(keys["popularity.recall_at_10"])


def test_failure_callback_never_raises(monkeypatch, caplog):
    """Neither a context it cannot use nor a notifier connection that does not exist may hide the
    task's own error (the alerts themselves: tests/test_alerts.py)."""
    from genre_lib.orchestration import failures

    monkeypatch.delenv("GENRE_NOTIFIER_CONN", raising=False)
    failures.on_task_failure({"ti": None})
    assert "could not record the failure in MLflow" in caplog.text
    assert "could not notify the failure" in caplog.text


def test_throttle():
    from genre_lib.orchestration.progress import Throttle

    t = Throttle(every_s=3600)
    assert t.due() and not t.due()
    assert Throttle(every_s=0).due() and Throttle(every_s=0).due()


def test_progress_reports_rate_and_what_is_left(caplog):
    """A stage's report reaches the heartbeat's line with its rate and an estimate of what is left."""
    import logging

    from genre_lib.orchestration import progress

    progress._done.clear()
    assert progress.describe() == ""
    progress.report("user blocks", 0, 8, users=0)
    t0 = progress._done["t0"]
    progress.report("user blocks", 2, 8, users=1200, interactions=54000)
    line = progress.describe(now=t0 + 60)
    assert line == "user blocks 2 of 8 (1,200 users, 54,000 interactions), 2.00/min, about 180 s left"
    log = logging.getLogger("genre.test")
    with caplog.at_level(logging.INFO, logger="genre.test"), progress.Heartbeat(log, "recommend D", every_s=0.05):
        progress.report("user blocks", 1, 4, users=10)
        import time

        time.sleep(0.3)
    assert any("recommend D: running" in m and "user blocks 1 of 4 (10 users)" in m for m in caplog.messages)
    assert progress.spark_status(None) == ""
