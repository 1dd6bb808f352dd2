"""The data checks (genre_lib/checks/): each check passes on steady nights and fails on the fault it
is for; a blocking failure stops the night at the publish gate and a warning does not; the records
are the contract's table, and the night's verdict names them."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from genre_lib.checks import inputs, outputs
from genre_lib.checks.figures import failed, frame, genre_mix, psi
from genre_lib.config.settings import load_config
from genre_lib.lake.storage import Lake
from genre_lib.orchestration.jobrun import JobContext
from genre_lib.stages import check_inputs, check_outputs, publish

GENRES = ["Drama", "Comedy", "Action", "Horror"]
M = {"run_id": "r1", "config_hash": "h"}


def night(d: int) -> str:
    return str(dt.date(2026, 11, 1) + dt.timedelta(days=d))


def cfg(tmp_path, *overrides):
    return load_config("configs/default.yaml", [f"lake.root={tmp_path / 'lake'}", f"data.path={tmp_path / 'data'}",
                                                f"publish.sqlite_path={tmp_path / 'serving.db'}", *overrides])


def write_inputs(lake: Lake, ds: str, rows=1000, users=100, items=60, genres=GENRES, quarantined=10, seed=0,
                 bad_event=False):
    rng = np.random.default_rng(seed)
    day = pd.Timestamp(ds, tz="UTC")
    clean = pd.DataFrame({"user_id": [f"u{k}" for k in rng.integers(0, users, rows)],
                          "item_id": [f"i{k}" for k in rng.integers(0, items, rows)],
                          "event": "rate", "rating": rng.integers(1, 6, rows).astype(float),
                          "ts": day + pd.to_timedelta(rng.integers(0, 86_399, rows), unit="s")})
    if bad_event:
        clean.loc[:4, "event"] = "teleport"
    lake.write_pandas("interactions_clean", ds, clean, {**M, "raw_rows": rows + quarantined,
                                                        "quarantined_rows": quarantined, "duplicate_rows": 0})
    cat = pd.DataFrame({"item_id": [f"i{k}" for k in range(items)], "title": "t", "description": None,
                        "genres": [[genres[k % len(genres)]] for k in range(items)], "tags": None})
    lake.write_pandas("items_clean", ds, cat, M)


def write_recs(lake: Lake, ds: str, users=100, top=5, items=60, skew=None):
    rows = [{"user_id": f"u{u}", "rank": r + 1, "item_id": f"i{(u * 7 + r) % items}" if skew is None else skew[r],
             "score": 1.0 / (r + 1)} for u in range(users) for r in range(top)]
    recs = pd.DataFrame(rows)
    for c in ("genre_score", "content_score", "cf_score", "popularity_score", "genre_r"):
        recs[c] = 0.0
    recs["reason"], recs["variant"] = "r", None
    lake.write_pandas("recommendations", ds, recs, M)


def run(stage, c, ds):
    return stage.run(JobContext.of(stage.__name__.rsplit(".", 1)[-1], c, ds, "r1"))


@pytest.fixture()
def steady(tmp_path):
    """Four steady nights, their inputs and outputs checked."""
    c = cfg(tmp_path)
    lake = Lake(c.lake_root)
    for d in range(4):
        write_inputs(lake, night(d), seed=d)
        write_recs(lake, night(d))
        assert run(check_inputs, c, night(d))["checks_failed_blocking"] == 0
        assert run(check_outputs, c, night(d))["checks_failed_blocking"] == 0
    return c, lake


def records(lake, table, ds):
    return lake.read_pandas(table, ds).set_index("check")


def test_steady_nights_pass_every_check(steady):
    c, lake = steady
    inp, out = records(lake, "input_checks", night(3)), records(lake, "output_checks", night(3))
    assert set(inp.index) == {"schema", "volume", "quarantine_share", "distinct_users", "distinct_items",
                              "catalogue_size", "genre_coverage"}
    assert set(out.index) == {"schema", "rows_per_user", "user_coverage", "item_coverage", "genre_mix_drift"}
    assert inp["passed"].all() and out["passed"].all()
    assert inp.loc["volume", "value"] == 1000 and inp.loc["volume", "lower"] == 500 and inp.loc["volume", "upper"] == 2000
    assert "1.00x the median 1000 of 3 trailing nights" in inp.loc["volume", "message"]
    assert inp.loc["quarantine_share", "value"] == pytest.approx(10 / 1010)
    assert out.loc["rows_per_user", "value"] == 5
    # the first night has nothing to compare with, and says so
    first = records(lake, "input_checks", night(0))
    assert "fewer than checks.min_trailing 2: not compared" in first.loc["volume", "message"]


@pytest.mark.parametrize("fault, check", [
    (dict(rows=90), "volume"),                      # a tenth of the usual volume
    (dict(genres=GENRES[:2]), "genre_coverage"),    # the catalogue lost half its genres
    (dict(items=20), "catalogue_size"),
    (dict(bad_event=True), "schema"),
    (dict(quarantined=1500), "quarantine_share"),  # 60%: above the default profile's 0.5
])
def test_each_input_check_fails_on_its_fault(steady, fault, check):
    c, lake = steady
    write_inputs(lake, night(4), seed=9, **fault)
    result = run(check_inputs, c, night(4))
    rec = records(lake, "input_checks", night(4))
    assert not rec.loc[check, "passed"], rec.loc[check, "message"]
    blocking = c.checks.severity[check] == "blocking"
    assert result["checks_failed_blocking"] == int(blocking)
    assert result[f"check.{check}.passed"] == 0


def test_missing_night_fails_schema_and_volume(steady):
    c, lake = steady
    run(check_inputs, c, night(4))  # no interactions_clean ds=night(4): a missing raw day
    rec = records(lake, "input_checks", night(4))
    assert not rec.loc["schema", "passed"] and "no committed partition" in rec.loc["schema", "message"]
    assert rec.loc["volume", "value"] == 0 and not rec.loc["volume", "passed"]


def test_refused_nights_do_not_become_the_normal(steady):
    """Four low nights in a row (each refused) then a healthy one: the band is made of the nights that
    passed, so the healthy night is inside it (with every trailing night, the median would be the low
    nights' and the healthy night 10x outside)."""
    c, lake = steady
    for d in range(4, 8):
        write_inputs(lake, night(d), rows=100, seed=d)
        assert run(check_inputs, c, night(d))["check.volume.passed"] == 0
    write_inputs(lake, night(8), seed=8)
    run(check_inputs, c, night(8))
    rec = records(lake, "input_checks", night(8))
    assert rec.loc["volume", "passed"], rec.loc["volume", "message"]
    assert "median 1000 of 3 trailing nights that passed" in rec.loc["volume", "message"]


def test_genre_mix_drift_and_output_faults(steady):
    c, lake = steady
    write_recs(lake, night(4), skew=["i0", "i4", "i8", "i12", "i16"])  # every pick a Drama
    run(check_outputs, c, night(4))
    rec = records(lake, "output_checks", night(4))
    assert not rec.loc["genre_mix_drift", "passed"] and rec.loc["genre_mix_drift", "value"] > 1
    assert "Drama 25.0% -> 100.0%" in rec.loc["genre_mix_drift", "message"]
    write_recs(lake, night(5), users=30)
    run(check_outputs, c, night(5))
    assert not records(lake, "output_checks", night(5)).loc["user_coverage", "passed"]


def test_psi():
    assert psi({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0
    assert 0.05 < psi({"a": 0.6, "b": 0.4}, {"a": 0.4, "b": 0.6}) < 0.25
    assert psi({"a": 1.0}, {"b": 1.0}) > 5


def test_blocking_stops_the_gate_and_warning_does_not(steady, tmp_path):
    c, lake = steady
    write_inputs(lake, night(4), rows=90, seed=4)  # volume: blocking by default
    run(check_inputs, c, night(4))
    assert publish.blocking_checks(lake, night(4)) and "volume" in publish.blocking_checks(lake, night(4))[0]
    # the same fault as a warning: recorded and failed, not blocking
    warn = cfg(tmp_path, "checks.severity={volume: warning}")
    run(check_inputs, warn, night(4))
    rec = lake.read_pandas("input_checks", night(4))
    assert failed(rec, "warning") and not failed(rec, "blocking")
    assert publish.blocking_checks(lake, night(4)) == []
    # off: not recorded at all
    run(check_inputs, cfg(tmp_path, "checks.severity={volume: 'off'}"), night(4))
    assert "volume" not in set(lake.read_pandas("input_checks", night(4))["check"])


def test_gate_refuses_a_night_with_a_failed_blocking_check(steady):
    c, lake = steady
    ds = night(4)
    write_inputs(lake, ds, rows=90, seed=4)
    run(check_inputs, c, ds)
    lake.write_json("evaluation", ds, "metrics.json", {"primary": "blend", "models": {
        "blend": {"ndcg@10": 0.3}, "popularity": {"ndcg@10": 0.1}}}, M)
    d = publish.gate(lake, ds, c.publish, None)
    assert not d.publish and "blocking check volume: clean rows" in d.reason
    assert "0.09x the median" in d.reason


def test_records_match_the_contract(steady):
    c, lake = steady
    from genre_lib.lake.tables import schema

    assert lake.read_pandas("input_checks", night(1)).columns.tolist() == schema("input_checks").names
    f = frame(night(1), "inputs", inputs.run_checks(lake, night(1), c), c.checks)
    assert set(f["severity"]) <= {"blocking", "warning"} and f["night"].eq(night(1)).all()
    mix = genre_mix(pd.Series(["a", "b", "a", "c"]),
                    outputs.labelled(pd.DataFrame({"item_id": ["a", "b", "c"], "genres": [["X", "Y"], None, []]})))
    assert mix.to_dict() == {"(none)": 0.5, "X": 0.25, "Y": 0.25}
