"""The checks on a night's inputs, after clean: tonight's clean interactions, their quarantine and the
catalogue against the contract (pandera) and against the trailing nights (volume, distinct users and
items, catalogue size, genre coverage), and the share of tonight's raw rows quarantined."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pandera.pandas as pa

from genre_lib.checks.figures import Result, at_most, in_band, pandera_result, trailing
from genre_lib.lake.storage import Lake

TABLE = "input_checks"


def interactions_schema(cfg, ds: str) -> pa.DataFrameSchema:
    """What the clean stage promises of a clean partition: ids set, a known event, a rating on the
    scale or none, an event time before the night's end and not before clean.min_ts."""
    c = cfg.clean
    end = pd.Timestamp(dt.date.fromisoformat(ds) + dt.timedelta(days=1), tz="UTC")
    start = pd.Timestamp(c.min_ts)
    start = start.tz_localize("UTC") if start.tzinfo is None else start
    in_night = pa.Check(lambda s: (s < end) & (s >= start), name=f"ts from {start.date()} to before {end.date()}")
    return pa.DataFrameSchema({
        "user_id": pa.Column(str, pa.Check.str_length(min_value=1), nullable=False),
        "item_id": pa.Column(str, pa.Check.str_length(min_value=1), nullable=False),
        "event": pa.Column(str, pa.Check.isin(c.events), nullable=False),
        "rating": pa.Column(float, pa.Check.in_range(c.rating_min, c.rating_max), nullable=True),
        "ts": pa.Column(checks=in_night, nullable=False),
    }, strict=True)


ITEMS = pa.DataFrameSchema({
    "item_id": pa.Column(str, pa.Check.str_length(min_value=1), nullable=False, unique=True),
    "title": pa.Column(str, nullable=True),
    "description": pa.Column(str, nullable=True),
    "genres": pa.Column(object, nullable=True),
    "tags": pa.Column(str, nullable=True),
}, strict=True)


def run_checks(lake: Lake, ds: str, cfg) -> list[Result]:
    ck = cfg.checks
    past = trailing(lake, TABLE, ds, ck.trailing_nights)
    has_clean = ds in lake.committed("interactions_clean")
    clean = lake.read_pandas("interactions_clean", ds) if has_clean else pd.DataFrame(
        columns=["user_id", "item_id", "event", "rating", "ts"])
    man = lake.manifest("interactions_clean", ds) if has_clean else {}
    items_ds = lake.latest("items_clean", ds)
    items = lake.read_pandas("items_clean", items_ds) if items_ds else pd.DataFrame(columns=list(ITEMS.columns))

    out = []
    schema = pandera_result("schema", interactions_schema(cfg, ds), clean, f"interactions_clean ds={ds}")
    item_schema = pandera_result("schema", ITEMS, items, f"items_clean ds={items_ds}")
    if not has_clean:
        schema = Result("schema", 1.0, False, f"interactions_clean has no committed partition ds={ds} "
                        "(a missing raw day, or clean did not run)", None, 0.0)
    out.append(schema if not schema.passed or item_schema.passed else item_schema)

    volume = float(man.get("row_count", len(clean)))
    out.append(in_band("volume", volume, past, ck, f"clean rows ds={ds}"))
    raw = float(man.get("raw_rows") or 0)
    share = float(man.get("quarantined_rows", 0)) / raw if raw else 0.0
    out.append(at_most("quarantine_share", share, ck.max_quarantine_share,
                       f"quarantined {man.get('quarantined_rows', 0)} of {raw:.0f} raw rows:"))
    out.append(in_band("distinct_users", float(clean["user_id"].nunique()), past, ck, "distinct users"))
    out.append(in_band("distinct_items", float(clean["item_id"].nunique()), past, ck, "distinct items"))
    out.append(in_band("catalogue_size", float(len(items)), past, ck, f"catalogue items (items_clean ds={items_ds})"))
    genres = {g for gs in items["genres"] if gs is not None for g in gs}
    out.append(in_band("genre_coverage", float(len(genres)), past, ck, "distinct catalogue genres",
                       (ck.min_genre_share, ck.band[1])))
    return out
