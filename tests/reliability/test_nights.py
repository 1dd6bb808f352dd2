"""Reruns of one night and consecutive nights, through the real job processes."""
import datetime as dt

import mlflow
import pandas as pd
import pytest

from genre_lib.lake.history import read_history_pandas
from tests.reliability.harness import STAGES, Workspace, assert_same

D = "2026-11-22"


@pytest.mark.slow
def test_same_night_three_times(tmp_path):
    ws = Workspace(tmp_path)
    ws.generate()
    snaps = []
    for n in range(3):
        for stage in STAGES:
            ws.run(stage, D, f"rerun-{n}")
        snaps.append({s: ws.snapshot(s, D) for s in STAGES})
    for n in (1, 2):
        for stage in STAGES:
            for table, frame in snaps[0][stage].items():
                assert_same(frame, snaps[n][stage][table], f"{table}, run {n + 1} vs run 1")
    mlflow.set_tracking_uri(ws.env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["genre-nightly"], output_format="list")
    assert sorted(r.data.tags["airflow_run_id"] for r in runs if r.data.tags["stage"] == "pipeline") == \
        ["rerun-0", "rerun-1", "rerun-2"]
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("genre-classifier", "champion").version) == "1"
    decisions = [client.get_model_version("genre-classifier", v).tags["gate_decision"] for v in ("2", "3")]
    assert decisions == ["kept_champion", "kept_champion"]


@pytest.mark.slow
def test_three_consecutive_nights(tmp_path):
    ws = Workspace(tmp_path, ["genres.half_life_days=1", "genres.rating_weighted=false", "genres.shrinkage=0",
                              "data.synthetic.days=5", "clean.late_days=0", "clean.catch_up=false"])
    ws.generate()
    nights = ["2026-11-20", "2026-11-21", "2026-11-22"]
    for n, night in enumerate(nights):
        if n == 2:  # one item's title changes on the last night
            items = pd.read_json(ws.tmp / "data/items.jsonl", lines=True, dtype=False)
            items.loc[0, "title"] = "A Completely New Title"
            items.to_json(ws.tmp / "data/items.jsonl", orient="records", lines=True)
        for stage in ["clean_interactions", "genre_weights", "embed_texts"]:
            ws.run(stage, night, f"night-{night}")
        for table in ("interactions_clean", "items_clean", "user_genre_weights", "item_embeddings"):
            assert night in ws.lake.committed(table), (table, night)
        man = ws.lake.manifest("item_embeddings", night)
        assert (man["embedded"], man["reused"]) == [(60, 0), (0, 60), (1, 59)][n]
        check_decayed_weights(ws, night)
    assert ws.lake.committed("interactions_clean") == nights  # one partition per night, nothing else


def check_decayed_weights(ws, night):
    """The weights equal f(u,c) = sum 0.5^(age/half-life) s(i,c), normalised, from the history."""
    hist = read_history_pandas(ws.lake, night)
    ig = ws.lake.read_pandas("item_genres", night)
    end = pd.Timestamp(dt.date.fromisoformat(night) + dt.timedelta(days=1), tz="UTC")
    hist["v"] = 0.5 ** ((end - hist["ts"]).dt.total_seconds() / 86400 / 1.0)
    f = hist.merge(ig, on="item_id").assign(f=lambda d: d.v * d.score).groupby(["user_id", "genre"])["f"].sum()
    want = (f / f.groupby("user_id").transform("sum")).rename("want").reset_index()
    got = ws.lake.read_pandas("user_genre_weights", night).merge(want, on=["user_id", "genre"], how="outer")
    assert got["weight"].notna().all() and got["want"].notna().all()
    assert (got["weight"] - got["want"]).abs().max() < 1e-9
