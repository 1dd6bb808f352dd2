"""Tonight beside the nights before (genre_lib/checks/trends.py): the figures read back from the lake's
records, the report's line charts, and one MLflow trends run whose metrics have the night as step."""
import datetime as dt

import pandas as pd
from mlflow.tracking import MlflowClient

from genre_lib.checks.figures import COLUMNS
from genre_lib.checks.trends import history, log_night, report_section
from genre_lib.evaluation.html_report import render
from genre_lib.lake.storage import Lake

M = {"run_id": "r", "config_hash": "h"}


def night(k):
    return str(dt.date(2026, 11, 1) + dt.timedelta(days=k))


def write_night(lake, k, volume, ndcg, published=True):
    ds = night(k)
    lake.write_json("evaluation", ds, "metrics.json", {"k": 10, "primary": "blend", "models": {
        "blend": {"ndcg@10": ndcg}, "no_cf": {"ndcg@10": ndcg - 0.05}, "popularity": {"ndcg@10": 0.1}}}, M)
    rows = [(ds, "volume", "inputs", volume, None, None, volume > 500, "blocking", "m", None),
            (ds, "quarantine_share", "inputs", 0.1, None, 0.2, True, "warning", "m", None)]
    lake.write_pandas("input_checks", ds, pd.DataFrame(rows, columns=COLUMNS), M)
    lake.write_pandas("output_checks", ds, pd.DataFrame(
        [(ds, "genre_mix_drift", "outputs", 0.01 * k, None, 0.25, True, "warning", "m", None)], columns=COLUMNS), M)
    lake.write_json("publish_log", ds, "decision.json", {"decision": {"publish": published}, "result": {
        "published": int(published)}}, M)


def test_history_and_report(tmp_path):
    lake = Lake(str(tmp_path))
    for k, (vol, ndcg) in enumerate([(1000, 0.30), (1010, 0.31), (100, 0.29)]):
        write_night(lake, k, vol, ndcg, published=vol > 500)
    frame = history(lake, night(2))
    assert list(frame.index) == [night(0), night(1), night(2)]
    assert frame.loc[night(2), "inputs.volume"] == 100 and frame.loc[night(2), "checks.failed_blocking"] == 1
    assert frame.loc[night(1), "eval.no_cf.ndcg_at_10"] == 0.26 and "published" not in frame  # publish comes later
    from genre_lib.checks.trends import night_figures

    assert night_figures(lake, night(2))["published"] == 0
    # tonight's evaluation before it is committed (the evaluate stage writes its report first)
    tonight = {"k": 10, "primary": "blend", "protocol": "temporal", "train_rows": 9, "test_rows": 3,
               "models": {"blend": {"ndcg@10": 0.5}, "popularity": {"ndcg@10": 0.1}}}
    assert history(lake, night(3), tonight=tonight).loc[night(3), "eval.blend.ndcg_at_10"] == 0.5
    section = report_section(lake, night(2), lake.read_json("evaluation", night(2), "metrics.json"))
    assert "3 nights, 2026-11-01 .. 2026-11-03" in section and section.count("<polyline") >= 6
    assert "ndcg@10: blend and its ablations" in section and "genre-mix drift" in section
    html = render(tonight, title="t", trends=section)
    assert html.index("Tonight beside the nights before") > html.index("Metrics per model")
    assert "no earlier nights" in report_section(Lake(str(tmp_path / "new")), night(0), tonight)


def test_trends_run_has_the_night_as_step(tmp_path, mlflow_uri):
    lake = Lake(str(tmp_path / "lake"))
    client = MlflowClient()
    exp = client.create_experiment("trend-test")
    for k, vol in enumerate([1000, 990, 1005]):
        write_night(lake, k, vol, 0.3)
        run = log_night(client, exp, lake, night(k))
    assert len({log_night(client, exp, lake, night(2)), run}) == 1  # one run per lake, found again
    steps = [(m.step, m.value) for m in client.get_metric_history(run, "inputs.volume")]
    assert sorted(set(steps)) == [(20261101, 1000.0), (20261102, 990.0), (20261103, 1005.0)]
    assert client.get_run(run).data.tags["stage"] == "trends"
