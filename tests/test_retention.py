"""Retention (genre_lib/lake/retention.py): what `keep_nights` lets go leaves through the lake's protocol,
and the history a profile may read is never shorter than its window."""
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from genre_lib.config.settings import load_config
from genre_lib.lake import retention, storage, tables
from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import TABLES

ROOT = Path(__file__).resolve().parents[1]
M = {"run_id": "r1", "config_hash": "h"}
KEEP = TABLES["items_clean"].keep_nights
DAY = dt.date(2026, 11, 1)


def items(n=2):
    return pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "title": "t", "description": None,
                         "genres": [["Drama"]] * n, "tags": None})


def nights(lake, offsets, table="items_clean"):
    """Commit one partition per night at DAY + each offset; returns the nights as YYYY-MM-DD."""
    out = [str(DAY + dt.timedelta(days=k)) for k in offsets]
    for n, d in enumerate(out):
        lake.write_pandas(table, d, items(n + 1), M)
    return out


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_expired_partitions_go_and_the_kept_stay_readable(tmp_path, caplog):
    lake = Lake(str(tmp_path))
    ds = nights(lake, range(KEEP + 3))
    plan = retention.plan(lake, ds[-1])
    assert [(r.table, r.ds, r.kind) for r in plan] == [("items_clean", d, "partition") for d in ds[:3]]
    assert all(f"newest {KEEP} committed nights" in r.reason for r in plan)
    with caplog.at_level(logging.INFO, logger="genre.lake"):
        assert retention.apply(lake, plan) == plan
    for d in ds[:3]:  # each removal logged with what and why
        assert any(f"removed items_clean ds={d}: older than the newest {KEEP}" in m for m in caplog.messages)
    reader = Lake(str(tmp_path))  # another process's view
    assert reader.committed("items_clean") == ds[3:]
    for n, d in enumerate(ds[3:], start=3):
        assert len(reader.read_pandas("items_clean", d)) == n + 1
    # nothing left behind: only the kept nights' folders, each its manifest and its one attempt
    assert sorted(p.name for p in (tmp_path / "items_clean").iterdir()) == [f"ds={d}" for d in ds[3:]]
    for d in ds[3:]:
        inside = sorted(p.name for p in (tmp_path / "items_clean" / f"ds={d}").iterdir())
        assert inside[0] == "_SUCCESS" and len(inside) == 2 and inside[1].startswith("_attempt-")
    assert retention.plan(lake, ds[-1]) == []  # a second pass finds nothing


def test_nights_are_counted_not_calendar_days(tmp_path):
    lake = Lake(str(tmp_path))
    ds = nights(lake, [0, 1, 5, 6, 7, 12, 20, 21, 30, 31][: KEEP + 2])  # missing nights in between
    today = str(dt.date.fromisoformat(ds[-1]) + dt.timedelta(days=40))  # the last nights all failed
    assert [r.ds for r in retention.plan(lake, today)] == ds[:2]  # still the newest KEEP nights stay


def test_a_protected_night_and_the_newest_are_kept(tmp_path, caplog):
    lake = Lake(str(tmp_path))
    ds = nights(lake, range(KEEP + 2))
    served = ("items_clean", dt.date.fromisoformat(ds[0]))  # the store still serves the oldest night
    assert [r.ds for r in retention.plan(lake, ds[-1], protect=[served])] == [ds[1]]
    retention.apply(lake, retention.plan(lake, ds[-1], protect=[served]))
    assert lake.committed("items_clean") == [ds[0], *ds[2:]]
    # partitions after `today` (a rerun of an old night) are not counted against it, nor removed
    assert retention.plan(lake, ds[2], protect=[served]) == []
    # apply refuses the newest committed partition whatever it is handed
    newest = retention.Removal("items_clean", ds[-1], "by hand", lake.partition("items_clean", ds[-1]),
                               attempt=lake.manifest("items_clean", ds[-1])["attempt"])
    with caplog.at_level(logging.WARNING, logger="genre.lake"):
        assert retention.apply(lake, [newest]) == []
    assert ds[-1] in lake.committed("items_clean") and "newest committed partition" in caplog.text


def test_a_night_committed_again_after_the_plan_is_kept(tmp_path):
    lake = Lake(str(tmp_path))
    ds = nights(lake, range(KEEP + 1))
    plan = retention.plan(lake, ds[-1])
    lake.write_pandas("items_clean", ds[0], items(9), M)  # a rerun of that night commits meanwhile
    assert retention.apply(lake, plan) == []
    assert len(lake.read_pandas("items_clean", ds[0])) == 9


def test_dry_run_touches_nothing(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(storage, "GRACE_S", 3600.0)
    lake = Lake(str(tmp_path))
    ds = nights(lake, range(KEEP + 2))
    scratch = tmp_path / "_artifacts" / "evaluate" / f"ds={ds[0]}"
    scratch.mkdir(parents=True)
    os.utime(scratch, (time.time() - 7200,) * 2)
    before = tree(tmp_path)
    plan = retention.plan(lake, ds[-1])
    with caplog.at_level(logging.INFO, logger="genre.lake"):
        assert retention.apply(lake, plan, dry_run=True) == plan
    assert tree(tmp_path) == before and len(plan) == 3
    assert caplog.text.count("would remove") == 3


def test_manifest_goes_first_and_a_cut_short_removal_is_finished_later(tmp_path, monkeypatch):
    lake = Lake(str(tmp_path))
    ds = nights(lake, range(KEEP + 1))
    plan = retention.plan(lake, ds[-1])

    def die(name):
        if name == "mid_retention":
            raise KeyboardInterrupt  # stands in for the SIGKILL of GENRE_FAULT_AT=mid_retention

    monkeypatch.setattr(retention, "fault_point", die)
    with pytest.raises(KeyboardInterrupt):
        retention.apply(lake, plan)
    part = tmp_path / "items_clean" / f"ds={ds[0]}"
    assert part.exists() and not (part / "_SUCCESS").exists()  # its data is there, but no reader sees it
    assert lake.committed("items_clean") == ds[1:]
    monkeypatch.undo()
    monkeypatch.setattr(storage, "GRACE_S", 3600.0)
    assert retention.plan(lake, ds[-1]) == []  # a writer may still be at it: left alone for the grace period
    monkeypatch.setattr(storage, "GRACE_S", 0.0)
    later = retention.plan(lake, ds[-1], now=time.time() + 1)
    assert [(r.ds, r.kind) for r in later] == [(ds[0], "uncommitted")]
    retention.apply(lake, later)
    assert not part.exists()


def test_superseded_attempts_are_vacuumed(tmp_path):
    lake = Lake(str(tmp_path))
    d = nights(lake, [0])[0]
    lake.write_pandas("items_clean", d, items(5), M)  # a rerun: the first attempt is superseded
    part = tmp_path / "items_clean" / f"ds={d}"
    man = json.loads((part / "_SUCCESS").read_text())
    old = next(p for p in part.iterdir() if p.name.startswith("_attempt-") and p.name != man["attempt"])
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - storage.GRACE_S - 7200))
    old.rename(part / f"_attempt-{stamp}-{old.name.rsplit('-', 1)[1]}")  # begun long ago
    man["committed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - storage.GRACE_S - 60))
    (part / "_SUCCESS").write_text(json.dumps(man))  # and switched away from before the grace period
    retention.apply(lake, retention.plan(lake, d))
    assert sorted(p.name for p in part.iterdir()) == ["_SUCCESS", man["attempt"]]
    assert len(lake.read_pandas("items_clean", d)) == 5


def test_scratch_left_behind_goes_and_a_live_run_stays(tmp_path):
    lake = Lake(str(tmp_path))
    art, old = tmp_path / "_artifacts", time.time() - 2 * 86400
    empty = art / "evaluate" / "ds=2026-11-01"  # what a stage's remove_scratch may leave
    stale = art / "recommend" / "ds=2026-11-02" / "run0.pkl"  # recommend's model of a run that died
    dead = art / "evaluate" / "ds=2026-11-03" / ("a" * 8)  # a dead run's scratch folder
    live = art / "evaluate" / "ds=2026-11-03" / ("b" * 8) / "truth"  # a run at work now
    for folder in (empty, stale.parent, dead / "ranked", live):
        folder.mkdir(parents=True)
    stale.write_bytes(b"x")
    (dead / "ranked" / "part-00000.parquet").write_bytes(b"x")
    (live / "part-00000.parquet").write_bytes(b"x")
    for p in (empty, stale, dead, dead / "ranked", dead / "ranked" / "part-00000.parquet"):
        os.utime(p, (old, old))
    plan = retention.plan(lake, "2026-11-03")
    assert sorted((r.table, r.ds, r.kind) for r in plan) == [
        ("_artifacts/evaluate", "2026-11-01", "empty"), ("_artifacts/evaluate", "2026-11-03", "scratch"),
        ("_artifacts/recommend", "2026-11-02", "scratch")]
    assert len(retention.apply(lake, plan)) == 3
    assert sorted(str(p.relative_to(art)) for p in art.rglob("*")) == [
        "evaluate", "evaluate/ds=2026-11-03", *(f"evaluate/ds=2026-11-03/{'b' * 8}" + s for s in ("", "/truth",
                                                "/truth/part-00000.parquet"))]


def test_every_table_declares_a_valid_retention():
    assert all(t.keep_nights is None or t.keep_nights >= 1 for t in TABLES.values())
    assert TABLES["item_embeddings"].keep_nights >= 2  # embed_texts' cache is the night before's vectors
    with pytest.raises(ValueError, match="keep_nights"):
        tables._declare(dataclasses.replace(TABLES["items_clean"], keep_nights=0))


def history_tables() -> set[str]:
    """Tables read as a history (through genre_lib/lake/history.py's `history_dates`) anywhere in genre_lib."""
    found = set()
    for path in (ROOT / "genre_lib").rglob("*.py"):
        text = path.read_text()
        for arg in re.findall(r"history_dates\(\s*[\w.]+\s*,\s*([\w\"']+)", text):
            if arg[0] in "\"'":
                found.add(arg.strip("\"'"))
            else:  # a module constant: TABLE = "interactions_clean"
                found.update(re.findall(rf"^{arg}\s*=\s*[\"'](\w+)[\"']", text, re.M))
    return found


def test_history_tables_are_kept_by_the_window():
    """Every table read through lake/history.py is a history table (kept by the profile's window,
    never by a count of nights), and retention keeps exactly the window's days of it."""
    assert "interactions_clean" in history_tables()
    assert all(TABLES[t].history and TABLES[t].keep_nights is None for t in history_tables())
    with pytest.raises(ValueError, match="kept by the window"):
        tables._declare(dataclasses.replace(TABLES["interactions_clean"], keep_nights=7))


def test_history_window_retention(tmp_path):
    lake = Lake(str(tmp_path))
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in tables.schema("interactions_clean").names})
    frame = frame.astype({"rating": "float64", "ts": "datetime64[us, UTC]"})
    days = [str(DAY + dt.timedelta(days=k)) for k in range(10)]
    for d in days[:6] + days[7:]:  # a missing night inside the window shortens nothing
        lake.write_pandas("interactions_clean", d, frame, M)
    assert retention.plan(lake, days[-1]) == []  # no window: everything is history
    plan = retention.plan(lake, days[-1], history_days=5)
    assert [r.ds for r in plan] == days[:5]
    assert all(f"before the history window of 5 days ({days[5]} .. {days[9]})" == r.reason for r in plan)
    # a backfilled night's window reaches further back, and nothing after the night goes
    assert [r.ds for r in retention.plan(lake, days[6], history_days=5)] == days[:2]


def test_catch_up_stays_inside_the_window(tmp_path):
    """clean's catch-up does not clean again a raw day that retention removed from the history."""
    from genre_lib.datasets.source import source_for

    days = [DAY + dt.timedelta(days=k) for k in range(10)]
    for d in days:
        folder = tmp_path / "raw" / "interactions" / f"ds={d}"
        folder.mkdir(parents=True)
        (folder / "events.jsonl").write_text('{"user_id": "u", "item_id": "i", "event": "view", "ts": 1}\n')
    cfg = load_config("configs/default.yaml", ["data.format=raw", f"data.path={tmp_path / 'raw'}",
                                               "genres.lookback_days=4", "clean.late_days=1"])
    assert source_for(cfg).raw_files(days[-1], committed=[]).days == [str(d) for d in days[-4:]]
    everything = load_config("configs/default.yaml", ["data.format=raw", f"data.path={tmp_path / 'raw'}",
                                                      "genres.lookback_days=null"])
    assert len(source_for(everything).raw_files(days[-1], committed=[]).days) == 10
