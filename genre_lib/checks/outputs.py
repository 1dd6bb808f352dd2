"""The checks on a night's outputs, before publish: tonight's recommendations against the contract
(pandera: ranks 1..top_n, one item per rank, finite scores), the rows every user gets, the users and
catalogue they cover, and the genre mix recommended tonight against the trailing nights' (PSI)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pandera.pandas as pa

from genre_lib.checks.figures import (
    Result,
    at_least,
    at_most,
    genre_mix,
    in_band,
    pandera_result,
    passed,
    psi,
    trailing,
)
from genre_lib.lake.storage import Lake

TABLE = "output_checks"


def recommendations_schema(top_n: int) -> pa.DataFrameSchema:
    return pa.DataFrameSchema({
        "user_id": pa.Column(str, nullable=False),
        "rank": pa.Column(int, pa.Check.in_range(1, top_n), nullable=False, coerce=True),
        "item_id": pa.Column(str, nullable=False),
        "score": pa.Column(float, pa.Check(np.isfinite, element_wise=False, name="finite"), nullable=False),
    }, unique=["user_id", "rank"], checks=[
        pa.Check(lambda f: ~f.duplicated(["user_id", "item_id"]), name="an item once per user"),
    ])


def labelled(items: pd.DataFrame) -> pd.DataFrame:
    """The catalogue's genre labels as (item_id, genre, weight): an item of k genres counts 1/k to each."""
    one = items[["item_id", "genres"]].explode("genres").dropna(subset=["genres"])
    return pd.DataFrame({"item_id": one["item_id"], "genre": one["genres"], "weight": 1.0})


def run_checks(lake: Lake, ds: str, cfg) -> list[Result]:
    ck = cfg.checks
    past = trailing(lake, TABLE, ds, ck.trailing_nights)
    recs = lake.read_pandas("recommendations", ds, columns=["user_id", "rank", "item_id", "score"])
    items_ds = lake.latest("items_clean", ds)
    items = lake.read_pandas("items_clean", items_ds, columns=["item_id", "genres"]) if items_ds else \
        pd.DataFrame(columns=["item_id", "genres"])

    out = [pandera_result("schema", recommendations_schema(cfg.recommend.top_n), recs, f"recommendations ds={ds}")]
    per_user = recs.groupby("user_id").size()
    fewest = float(per_user.min()) if len(per_user) else 0.0
    out.append(at_least("rows_per_user", fewest, ck.min_rows_per_user,
                        f"fewest rows of a user (of {len(per_user)} users; most {int(per_user.max() or 0) if len(per_user) else 0})"))
    out.append(in_band("user_coverage", float(len(per_user)), past, ck, "users with recommendations"))
    coverage = recs["item_id"].nunique() / len(items) if len(items) else 0.0
    out.append(at_least("item_coverage", coverage, ck.min_item_coverage,
                        f"{recs['item_id'].nunique()} of {len(items)} catalogue items recommended:"))

    mix = genre_mix(recs["item_id"], labelled(items)).to_dict()
    before = [json.loads(d) for d in past.loc[passed(past, "genre_mix_drift"), "detail"] if isinstance(d, str)]
    if len(before) < ck.min_trailing:
        out.append(Result("genre_mix_drift", 0.0, True, f"genre mix of {len(mix)} genres; {len(before)} trailing "
                          f"nights, fewer than checks.min_trailing {ck.min_trailing}: not compared",
                          None, ck.max_mix_psi, {"mix": mix}))
    else:
        keys = {g for d in before for g in d["mix"]} | set(mix)
        mean = {g: float(np.mean([d["mix"].get(g, 0.0) for d in before])) for g in keys}
        value = psi(mix, mean)
        shifted = sorted(keys, key=lambda g: -abs(mix.get(g, 0.0) - mean[g]))[:3]
        said = ", ".join(f"{g} {mean[g]:.1%} -> {mix.get(g, 0.0):.1%}" for g in shifted)
        r = at_most("genre_mix_drift", value, ck.max_mix_psi,
                    f"PSI of tonight's genre mix against the mean of {len(before)} trailing nights (most moved: {said}):")
        out.append(Result(r.check, r.value, r.passed, r.message, None, ck.max_mix_psi, {"mix": mix}))
    return out
