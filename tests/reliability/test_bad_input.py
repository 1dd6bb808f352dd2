"""A generated raw log with every kind of bad row: each gets its own reason code, the books
balance (raw = clean + quarantined + duplicates), and every good row in the same file arrives."""
import datetime as dt
import json

import numpy as np
import pandas as pd

from genre_lib.config.data import SyntheticConfig
from genre_lib.config.settings import load_config
from genre_lib.datasets import synthetic
from genre_lib.lake.storage import Lake
from genre_lib.orchestration.jobrun import JobContext
from genre_lib.stages import clean_interactions as clean

D = dt.date(2026, 11, 22)
M = {"run_id": "bad-input", "config_hash": "h"}


def good_rows():
    cfg = SyntheticConfig(users=50, items=80, interactions=1500, days=1, end_date=D, seed=3)
    rng = np.random.default_rng(3)
    items = synthetic.make_items(cfg, rng)
    inter = synthetic.make_interactions(cfg, items, rng).drop_duplicates(["user_id", "item_id", "event"])
    return items.drop(columns="_true"), inter.drop(columns="ds")


def as_line(r) -> str:
    return json.dumps({"user_id": r.user_id, "item_id": r.item_id, "event": r.event,
                       "rating": None if pd.isna(r.rating) else float(r.rating), "ts": r.ts.isoformat()})


def bad_rows(g) -> dict[str, list[str]]:
    """kind -> raw lines, built from good rows `g` (a few distinct ones per kind)."""
    rec = lambda r, **kw: json.dumps({**json.loads(as_line(r)), **kw})  # noqa: E731
    rows = list(g.itertuples(index=False))
    burst = [json.dumps({"user_id": "u_bot", "item_id": rows[0].item_id, "event": "view", "rating": None,
                         "ts": f"2026-11-22T{10 + m // 60:02d}:{m % 60:02d}:00+00:00"}) for m in range(300)]
    return {
        "malformed_line": ['{"user_id": "u1", "item_id"', "not json at all"],
        "missing_id": [rec(rows[0], user_id=None), rec(rows[1], item_id="")],
        "bad_timestamp": [rec(rows[2], ts="31/12/2026"), rec(rows[3], ts="soon")],
        "future_timestamp": [rec(rows[4], ts="2026-11-23T00:00:01+00:00")],
        "rating_out_of_range": [rec(rows[5], event="rate", rating=7.5), rec(rows[6], event="rate", rating=-1)],
        "bad_rating": [rec(rows[7], event="rate", rating="four")],
        "unknown_event": [rec(rows[8], event="like")],
        "unknown_item": [rec(rows[9], item_id="not-in-catalogue")],
        "schema_drift": [rec(rows[10], device="phone"), json.dumps({"user_id": rows[11].user_id, "ts": "2026-11-22"})],
        "bot_user": burst,
        "duplicate_exact": [as_line(rows[12]), as_line(rows[13])],
        "duplicate_near": [rec(rows[14], ts=(rows[14].ts + pd.Timedelta(seconds=20)).isoformat())],
    }


def test_twelve_kinds_empty_and_missing_days(spark, tmp_path):
    items, good = good_rows()
    assert good.groupby("user_id").size().max() <= 250  # no real user looks like the bot
    bad = bad_rows(good)
    root = tmp_path / "raw"
    (root / "interactions" / f"ds={D}").mkdir(parents=True)
    (root / "interactions" / "ds=2026-11-21").mkdir(parents=True)
    (root / "interactions" / "ds=2026-11-21" / "events.jsonl").write_text("")  # an empty day
    # 2026-11-20: no folder at all (a missing day inside the late window)
    items.to_json(root / "items.jsonl", orient="records", lines=True)
    lines = [as_line(r) for r in good.itertuples(index=False)] + [x for v in bad.values() for x in v]
    np.random.default_rng(0).shuffle(lines)
    (root / "interactions" / f"ds={D}" / "events.jsonl").write_text("\n".join(lines) + "\n")

    cfg = load_config(None, [f"lake.root={tmp_path}/lake", "data.format=raw", f"data.path={root}",
                             "clean.max_events_per_user_day=250", "clean.late_days=2"])
    lake = Lake(cfg.lake_root)
    totals = clean.run(JobContext.of("clean_interactions", cfg, D, M["run_id"], spark))

    reasons = lake.read_pandas("interactions_quarantine", str(D)).groupby("reason").size().to_dict()
    expected = {k: len(v) for k, v in bad.items() if not k.startswith("duplicate")}
    assert reasons == expected
    assert totals["quarantine.duplicate_exact"] == 2 and totals["quarantine.duplicate_near"] == 1
    man = lake.manifest("interactions_clean", str(D))
    assert man["raw_rows"] == len(lines) == man["clean_rows"] + man["quarantined_rows"] + man["duplicate_rows"]
    # every good row arrives, exactly once
    got = lake.read_pandas("interactions_clean", str(D))
    key = lambda df: sorted(zip(df.user_id, df.item_id, df.event, df.ts.map(lambda t: t.isoformat())))  # noqa: E731
    assert key(got) == key(good)
    assert lake.manifest("interactions_clean", "2026-11-21")["row_count"] == 0
    assert "2026-11-20" not in lake.committed("interactions_clean")  # never existed: nothing to own
