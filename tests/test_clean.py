"""The clean stage on hand-made raw files: one fixture row per quarantine reason, reconciliation,
idempotent reruns, whole-file schema drift, empty and missing days."""
import json

import pandas as pd
import pytest

from genre_lib.config.settings import load_config
from genre_lib.lake.storage import Lake
from genre_lib.orchestration.jobrun import JobContext
from genre_lib.stages import clean_interactions as clean

D = "2026-11-22"


def run_clean(spark, cfg, day=D, run_id="r1"):
    return clean.run(JobContext.of("clean_interactions", cfg, day, run_id, spark))


def row(u="u1", i="i1", e="view", r=None, ts="2026-11-22T10:00:00Z", **extra):
    return json.dumps({"user_id": u, "item_id": i, "event": e, "rating": r, "ts": ts, **extra})


GOOD = [row(), row(i="i2", e="rate", r=4.5, ts="2026-11-22T11:00:00+00:00"), row(u="u2", ts="1763805600"),
        row(u="u3", i="i3", e="purchase", ts="2026-11-22 12:00:00")]
BAD = {
    "malformed_line": '{"user_id": "u1", "item_id": ',
    "missing_id": row(u=None),
    "bad_timestamp": row(ts="yesterday"),
    "future_timestamp": row(ts="2027-01-01T00:00:00Z"),
    "too_old_timestamp": row(ts="1980-01-01T00:00:00Z"),
    "bad_rating": row(e="rate", r="five"),
    "rating_out_of_range": row(e="rate", r=9),
    "unknown_event": row(e="hover"),
    "unknown_item": row(i="i404"),
    "schema_drift": row(device="tv"),
}
DUPES = [row(), row(ts="2026-11-22T10:00:30Z")]  # exact repeat of GOOD[0], and a near repeat 30 s later
BOT = [row(u="bot", i="i1", ts=f"2026-11-22T0{h}:00:00Z") for h in range(6)]


def write_raw(root, lines_by_day, items=("i1", "i2", "i3")):
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"item_id": list(items), "title": [f"T {i}" for i in items], "description": None,
                  "genres": ["Drama|Action", "Drama", ""], "tags": None}).to_json(root / "items.jsonl", orient="records", lines=True)
    for day, lines in lines_by_day.items():
        d = root / "interactions" / f"ds={day}"
        d.mkdir(parents=True, exist_ok=True)
        if lines is not None:
            (d / "events.jsonl").write_text("\n".join(lines) + ("\n" if lines else ""))


def cfg_for(tmp_path, *extra):
    return load_config(None, [f"lake.root={tmp_path}/lake", "data.format=raw", f"data.path={tmp_path}/raw",
                              "clean.max_events_per_user_day=5", "clean.dedupe_window_s=60", *extra])


def test_every_reason_and_reconciliation(spark, tmp_path):
    write_raw(tmp_path / "raw", {D: GOOD + list(BAD.values()) + DUPES + BOT})
    cfg = cfg_for(tmp_path)
    lake = Lake(cfg.lake_root)
    totals = run_clean(spark, cfg)
    q = lake.read_pandas("interactions_quarantine", D)
    reasons = q.groupby("reason").size().to_dict()
    assert reasons == {**{k: 1 for k in BAD}, "bot_user": 6}
    assert totals["duplicate_rows"] == 2 and totals["quarantine.duplicate_exact"] == 1
    c = lake.read_pandas("interactions_clean", D)
    assert len(c) == len(GOOD)
    assert set(c.user_id) == {"u1", "u2", "u3"} and c.rating.notna().sum() == 1
    man = lake.manifest("interactions_clean", D)
    raw_rows = len(GOOD) + len(BAD) + len(DUPES) + len(BOT)
    assert man["raw_rows"] == raw_rows == man["clean_rows"] + man["quarantined_rows"] + man["duplicate_rows"]
    # a quarantined row keeps what arrived, as text
    bad = q[q.reason == "bad_rating"].iloc[0]
    assert bad.rating == "five" and bad.run_id == "r1" and '"five"' in bad.raw
    items = lake.read_pandas("items_clean", D).set_index("item_id")
    assert list(items.loc["i1", "genres"]) == ["Action", "Drama"] and len(items.loc["i3", "genres"]) == 0


def test_rerun_is_identical_and_late_window(spark, tmp_path):
    write_raw(tmp_path / "raw", {"2026-11-20": [row(ts="2026-11-20T10:00:00Z")],
                                 "2026-11-21": [row(u="u5", ts="2026-11-21T10:00:00Z")], D: GOOD})
    cfg = cfg_for(tmp_path, "clean.late_days=1")
    lake = Lake(cfg.lake_root)
    run_clean(spark, cfg)
    assert lake.committed("interactions_clean") == ["2026-11-20", "2026-11-21", D]  # catch-up on a new lake
    first = {d: lake.read_pandas("interactions_clean", d).sort_values(["user_id", "ts"]).reset_index(drop=True)
             for d in lake.committed("interactions_clean")}
    # a late row for the 21st arrives; the rerun of the 22nd picks it up and leaves the 20th alone
    with open(tmp_path / "raw/interactions/ds=2026-11-21/events.jsonl", "a") as f:
        f.write(row(u="u6", ts="2026-11-21T11:00:00Z") + "\n")
    before_20 = lake.manifest("interactions_clean", "2026-11-20")["committed_at"]
    run_clean(spark, cfg, run_id="r2")
    assert lake.manifest("interactions_clean", "2026-11-20")["committed_at"] == before_20
    assert lake.manifest("interactions_clean", "2026-11-21")["row_count"] == 2
    again = lake.read_pandas("interactions_clean", D).sort_values(["user_id", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(first[D], again)


def test_empty_and_missing_day_succeed_with_zero_rows(spark, tmp_path):
    write_raw(tmp_path / "raw", {"2026-11-21": [], "2026-11-20": [row(ts="2026-11-20T10:00:00Z")]})
    cfg = cfg_for(tmp_path, "clean.late_days=0")
    lake = Lake(cfg.lake_root)
    run_clean(spark, cfg, "2026-11-21")
    assert lake.manifest("interactions_clean", "2026-11-21")["row_count"] == 0
    run_clean(spark, cfg)  # no folder for the 22nd at all
    man = lake.manifest("interactions_clean", D)
    assert man["row_count"] == 0 and man["missing_input"] is True


def test_whole_file_with_wrong_columns_is_an_error(spark, tmp_path):
    write_raw(tmp_path / "raw", {D: None})
    (tmp_path / "raw/interactions" / f"ds={D}" / "events.csv").write_text("uid,item_id,event,rating,ts,extra\nu1,i1,view,,2026-11-22T10:00:00Z,x\n")
    cfg = cfg_for(tmp_path)
    with pytest.raises(clean.SchemaDriftError, match=r"extra: \['extra', 'uid'\].*missing: \['user_id'\]"):
        run_clean(spark, cfg)
    assert Lake(cfg.lake_root).committed("interactions_clean") == []


def test_csv_and_parquet_inputs(spark, tmp_path):
    write_raw(tmp_path / "raw", {D: None})
    folder = tmp_path / "raw/interactions" / f"ds={D}"
    (folder / "a.csv").write_text("user_id,item_id,event,rating,ts\nu1,i1,rate,4,2026-11-22T10:00:00Z\nu2,i2,view,,1763805600\nu3,i1,view\n")
    pd.DataFrame({"user_id": ["u9", "u8"], "item_id": ["i3", "i3"], "event": ["click", "zap"], "rating": [None, None],
                  "ts": ["2026-11-22T09:00:00Z"] * 2}).to_parquet(folder / "b.parquet")
    cfg = cfg_for(tmp_path)
    lake = Lake(cfg.lake_root)
    run_clean(spark, cfg)
    assert sorted(lake.read_pandas("interactions_clean", D).user_id) == ["u1", "u2", "u9"]
    q = lake.read_pandas("interactions_quarantine", D).sort_values("reason")
    assert q.reason.tolist() == ["schema_drift", "unknown_event"]
    assert q.raw.tolist() == ["u3,i1,view", '{"user_id":"u8","item_id":"i3","event":"zap","ts":"2026-11-22T09:00:00Z"}']
    assert q.source_file.str.endswith("a.csv").tolist() == [True, False]


def test_reconciliation_fails_when_a_stage_loses_a_row(spark, tmp_path, monkeypatch):
    from pyspark.sql import functions as F

    write_raw(tmp_path / "raw", {D: GOOD})
    cfg = cfg_for(tmp_path)
    label = clean.label_rows
    # a stage after reading that drops one row: raw_rows must come from the files, not the labels
    monkeypatch.setattr(clean, "label_rows", lambda c, raw, ids: label(c, raw.where(F.col("raw") != GOOD[1]), ids))
    with pytest.raises(RuntimeError, match=f"reconciliation failed for ds={D}"):
        run_clean(spark, cfg)
    assert Lake(cfg.lake_root).committed("interactions_clean") == []


def test_blank_and_header_lines_are_counted_not_rows(spark, tmp_path):
    write_raw(tmp_path / "raw", {D: [GOOD[0], "", "   ", GOOD[1]]})
    folder = tmp_path / "raw/interactions" / f"ds={D}"
    header = "user_id,item_id,event,rating,ts"  # repeated mid-file, as concatenated exports do
    (folder / "a.csv").write_text(f"{header}\nu2,i1,view,,2026-11-22T10:00:00Z\n\n{header}\nu3,i2,view,,2026-11-22T10:00:00Z\n")
    cfg = cfg_for(tmp_path)
    lake = Lake(cfg.lake_root)
    run_clean(spark, cfg)
    man = lake.manifest("interactions_clean", D)
    assert (man["raw_rows"], man["clean_rows"], man["blank_lines"], man["header_lines"]) == (4, 4, 3, 2)
    assert lake.manifest("interactions_quarantine", D)["row_count"] == 0


def test_jsonl_file_with_wrong_columns_names_them(spark, tmp_path):
    renamed = [json.dumps({"user_id": "u1", "item_id": "i1", "event": "view", "rating": None, "time": "2026-11-22T10:00:00Z"}),
               json.dumps({"user_id": "u2", "item_id": "i1", "event": "view", "time": "2026-11-22T10:00:00Z"})]
    write_raw(tmp_path / "raw", {D: renamed})
    (tmp_path / "raw/interactions" / f"ds={D}" / "ok.jsonl").write_text(GOOD[0] + "\n")
    cfg = cfg_for(tmp_path)
    with pytest.raises(clean.SchemaDriftError) as e:
        run_clean(spark, cfg)
    assert "events.jsonl: wrong columns (extra: ['time'], missing: ['rating', 'ts'])" in str(e.value)
    assert "ok.jsonl" not in str(e.value)
    assert Lake(cfg.lake_root).committed("interactions_clean") == []


def test_csv_quoted_fields_are_parsed_as_csv(spark, tmp_path):
    write_raw(tmp_path / "raw", {D: None})
    (tmp_path / "raw/interactions" / f"ds={D}" / "a.csv").write_text(
        'user_id,item_id,event,rating,ts\n"Doe, Jane",i1,rate,"4.5",2026-11-22T10:00:00Z\n'
        'u2,"i2",view,,"2026-11-22T11:00:00Z"\nu3,"i3,view,,2026-11-22T12:00:00Z\n')
    cfg = cfg_for(tmp_path)
    lake = Lake(cfg.lake_root)
    run_clean(spark, cfg)
    c = lake.read_pandas("interactions_clean", D).sort_values("user_id")
    assert list(c.user_id) == ["Doe, Jane", "u2"] and list(c.item_id) == ["i1", "i2"] and c.rating.iloc[0] == 4.5
    q = lake.read_pandas("interactions_quarantine", D)  # an unclosed quote: malformed, kept as it arrived
    assert q.reason.tolist() == ["malformed_line"] and q.raw.tolist() == ['u3,"i3,view,,2026-11-22T12:00:00Z']


def test_csv_header_with_bom_quotes_and_spaces(spark, tmp_path):
    write_raw(tmp_path / "raw", {D: None})
    (tmp_path / "raw/interactions" / f"ds={D}" / "a.csv").write_text(
        '\ufeff"user_id", item_id , "event",rating, ts\r\nu1,i1,view,,2026-11-22T10:00:00Z\r\n', encoding="utf-8")
    cfg = cfg_for(tmp_path)
    lake = Lake(cfg.lake_root)
    run_clean(spark, cfg)
    man = lake.manifest("interactions_clean", D)
    assert (man["raw_rows"], man["clean_rows"], man["quarantined_rows"], man["header_lines"]) == (1, 1, 0, 1)


def test_flat_export_skips_hidden_and_underscore_files(spark, tmp_path):
    write_raw(tmp_path / "raw", {})
    inter = tmp_path / "raw/interactions"
    (inter / "_temporary/0").mkdir(parents=True)
    (inter / "events.jsonl").write_text("\n".join(GOOD) + "\n")
    (inter / "_SUCCESS").write_text("")
    (inter / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (inter / "_temporary/0/part-0.jsonl").write_text("half-written\n")
    cfg = cfg_for(tmp_path)
    lake = Lake(cfg.lake_root)
    run_clean(spark, cfg)
    man = lake.manifest("interactions_clean", D)
    assert man["raw_rows"] == man["clean_rows"] == len(GOOD)
