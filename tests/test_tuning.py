"""genre_tuning: bad tuning parameters are refused by name before a trial starts; a study resumes
from its storage under one MLflow parent run; promotion writes a new profile under configs/tuned/;
the test split is scored once, for the best trial; and an `airflow dags test genre_tuning` of 8
trials on tiny data leaves one parent run with 8 nested trial runs and the profile artifact."""
import datetime as dt
import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from genre_lib.config.settings import ConfigError, load_config
from genre_lib.evaluation import tuning
from genre_lib.lake.storage import Lake
from tests.airflow_cluster import airflow_env, prepare

D = "2026-11-22"
MANIFEST = {"run_id": "test", "config_hash": "test"}
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def write_tiny_night(root, n_users=40, n_items=60, n=1500, seed=0) -> None:
    """A committed night with what tuning reads: interactions_clean, items_clean, item_genres.
    Users favour two genres, so the genre knobs have something to find."""
    rng = np.random.default_rng(seed)
    item_genre = rng.integers(0, len(GENRES), n_items)
    taste = np.stack([rng.choice(len(GENRES), 2, replace=False) for _ in range(n_users)])
    users = rng.integers(0, n_users, n)
    liked = rng.random(n) < 0.7
    pools = [np.flatnonzero(np.isin(item_genre, taste[u])) for u in range(n_users)]
    items = np.array([rng.choice(pools[u]) if ok else rng.integers(0, n_items) for u, ok in zip(users, liked)])
    ts = pd.Timestamp("2026-11-19", tz="UTC") + pd.to_timedelta((np.sort(rng.random(n)) * 3 * 86400).astype(int), unit="s")
    lake = Lake(str(root))
    lake.write_pandas("interactions_clean", D, pd.DataFrame({
        "user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items], "event": "rate",
        "rating": rng.integers(1, 6, n).astype(float), "ts": ts}), MANIFEST)
    lake.write_pandas("items_clean", D, pd.DataFrame({
        "item_id": [f"i{i}" for i in range(n_items)], "title": [f"film {i}" for i in range(n_items)],
        "description": "", "genres": [[GENRES[g]] for g in item_genre], "tags": ""}), MANIFEST)
    lake.write_pandas("item_genres", D, pd.DataFrame({
        "item_id": [f"i{i}" for i in range(n_items)], "genre": [GENRES[g] for g in item_genre], "score": 1.0}),
        MANIFEST)


def _overrides(tmp_path) -> list[str]:
    return [f"lake.root={tmp_path}/lake", f"tuning.storage=sqlite:///{tmp_path}/optuna.db"]


def _runs(uri: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=["genre-tuning"], output_format="list")


@pytest.mark.parametrize("override, field", [
    ("tuning.n_trials=0", "tuning.n_trials"),
    ("tuning.sampler=grid", "tuning.sampler"),
    ("tuning.metric=auc", "tuning.metric"),
    ("tuning.protocol=cold_items", "tuning.protocol"),
])
def test_bad_tuning_parameters_refused_by_name(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        tuning.check("configs/default.yaml", [override])


@pytest.mark.parametrize("space, message", [
    ({"recommend.cf.reg": {"low": 10, "hgih": 20}}, r"tuning\.space\.recommend\.cf\.reg\.hgih: unknown key"),
    ({"recommend.cf.reg": {"low": 20, "high": 20}}, r"recommend\.cf\.reg: empty range"),
    ({"recommend.cf_nope": {"low": 1, "high": 2}}, r"recommend\.cf_nope: no such key in the config"),
    ({"lake.root": {"choices": ["a", "b"]}}, r"lake\.root: not tunable"),
    ({"recommend.cf.dropout": {"low": 0.1, "high": 1.5}}, r"recommend\.cf\.dropout: 1\.5 is not a valid value"),
    ({"recommend.genre.scorer": {"choices": []}}, r"recommend\.genre\.scorer: empty choices"),
    ({"recommend.cf.reg": {"low": 0, "high": 10, "log": True}}, r"recommend\.cf\.reg: log scale needs low > 0"),
])
def test_bad_search_space_refused_by_name(tmp_path, space, message):
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({"tuning": {"space": space}}))
    with pytest.raises(ConfigError, match=message):
        tuning.check(str(profile), [])


def test_form_values_become_overrides_and_are_checked(tmp_path):
    out = tuning.resolve({"config": "configs/default.yaml", "sampler": "random", "n_trials": 3, "promote": True,
                          "metric": "recall@5"}, "manual__x")
    assert out["sampler"] == "random" and out["n_trials"] == 3
    assert "tuning.promote=true" in out["args"] and "tuning.metric=recall@5" in out["args"]
    with pytest.raises(ConfigError, match=r"tuning\.n_trials"):
        tuning.resolve({"config": "configs/default.yaml", "n_trials": 0}, "manual__x")
    with pytest.raises(ConfigError, match="config"):
        tuning.resolve({"config": "configs/nope.yaml"}, "manual__x")


def test_study_resumes_under_one_parent_and_promotes(tmp_path, mlflow_uri, monkeypatch):
    write_tiny_night(tmp_path / "lake")
    monkeypatch.setattr(tuning, "TUNED_DIR", tmp_path / "tuned")
    monkeypatch.setattr(tuning, "PROJECT_ROOT", tmp_path)
    base = ["--config", "configs/default.yaml", *sum((["--set", o] for o in _overrides(tmp_path)), [])]
    assert tuning.main([*base, "--set", "tuning.n_trials=3", "--set", "tuning.sampler=random"]) == 0
    scored = []
    real_score = tuning.score
    monkeypatch.setattr(tuning, "score", lambda train, truth, *a, **k: scored.append(len(truth)) or real_score(
        train, truth, *a, **k))
    assert tuning.main([*base, "--set", "tuning.n_trials=5", "--set", "tuning.sampler=random",
                        "--set", "tuning.promote=true"]) == 0
    # the resumed study ran 2 more trials on validation, then the best one on test, once
    cfg = load_config("configs/default.yaml", _overrides(tmp_path))
    problem = tuning.carve(*tuning.night_inputs(cfg, None)[:2], cfg, dt.date.fromisoformat(D))
    assert scored == [len(problem.val)] * 2 + [len(problem.test)]

    runs = _runs(mlflow_uri)
    parents = [r for r in runs if r.data.tags.get("stage") == "tuning"]
    trials = [r for r in runs if r.data.tags.get("stage") == "tuning-trial"]
    assert len(parents) == 1 and len(trials) == 5
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parents[0].info.run_id}
    p = parents[0]
    assert p.data.tags["sampler"] == "random" and p.data.tags["study_name"] == "default-temporal-random"
    assert "best.test.ndcg_at_10" in p.data.metrics and "best.val.ndcg_at_10" in p.data.metrics
    promoted = list((tmp_path / "tuned").glob("default-*.yaml"))
    assert len(promoted) == 1 and p.data.tags["promoted"].endswith(promoted[0].name)
    best = json.loads(_artifact(p, "summary.json"))["best_params"]
    cfg = load_config(str(promoted[0]))
    assert cfg.recommend.cf.reg == pytest.approx(best["recommend.cf.reg"])
    assert cfg.genres.shrinkage == pytest.approx(best["genres.shrinkage"])
    assert "recommend:" in _artifact(p, "best_profile.yaml") and "+" in _artifact(p, "best_profile.diff")


def _artifact(run, path: str) -> str:
    import mlflow

    return mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{path}")


def test_airflow_dags_test_genre_tuning(tmp_path):
    env = airflow_env(tmp_path)
    write_tiny_night(tmp_path / "lake")
    prepare(env, pools=False)
    conf = json.dumps({"config": "configs/default.yaml", "n_trials": 8, "sampler": "tpe",
                       "overrides": _overrides(tmp_path)})
    run = subprocess.run(["airflow", "dags", "test", "genre_tuning", "-c", conf], cwd=tuning.PROJECT_ROOT,
                         env=env, capture_output=True, text=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "state=success" in log, log[-5000:]
    runs = _runs(env["MLFLOW_TRACKING_URI"])
    parents = [r for r in runs if r.data.tags.get("stage") == "tuning"]
    trials = [r for r in runs if r.data.tags.get("stage") == "tuning-trial"]
    assert len(parents) == 1 and len(trials) == 8
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parents[0].info.run_id}
    assert parents[0].data.tags["airflow_run_id"].startswith("manual__")
    assert "reg" in yaml.safe_load(_artifact(parents[0], "best_profile.yaml"))["recommend"]["cf"]


@pytest.fixture(scope="module")
def tuning_dag(tmp_path_factory):
    import os

    os.environ.update({k: v for k, v in airflow_env(tmp_path_factory.mktemp("af")).items() if k.startswith("AIRFLOW")})
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(tuning.PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["genre_tuning"]


def test_tuning_dag_wiring_and_form(tuning_dag):
    from airflow.sdk.exceptions import ParamValidationError

    assert type(tuning_dag.timetable).__name__ == "NullTimetable"  # manual trigger only
    assert {t.task_id: sorted(t.downstream_task_ids) for t in tuning_dag.tasks} == {"check": ["tune"], "tune": []}
    assert "jobs/tune.py" in tuning_dag.get_task("tune").bash_command
    assert set(tuning_dag.params.keys()) == {"config", "sampler", "n_trials", "timeout_minutes", "protocol", "metric",
                                             "study_name", "promote", "run_date", "overrides"}
    for field, value in [("sampler", "grid"), ("n_trials", 0), ("protocol", "cold_items"), ("metric", "auc"),
                         ("promote", "yes"), ("config", "configs/missing.yaml")]:
        with pytest.raises(ParamValidationError):
            tuning_dag.params.get_param(field).resolve(value)
    assert tuning_dag.params.get_param("n_trials").resolve(None) is None  # empty: the profile's value


def test_pruned_trial_stops_at_half_of_the_validation_users(tmp_path):
    write_tiny_night(tmp_path / "lake")
    cfg = load_config("configs/default.yaml", _overrides(tmp_path))
    problem = tuning.carve(*tuning.night_inputs(cfg, None)[:2], cfg, dt.date.fromisoformat(D))
    seen = []
    stopped = tuning.score(problem.inner, problem.val, problem, cfg, stop=lambda half: seen.append(half) or True)
    full = tuning.score(problem.inner, problem.val, problem, cfg, stop=lambda half: False)
    alone = tuning.score(problem.inner, problem.val, problem, cfg)
    assert len(stopped) == 1 and seen == stopped  # pruned: the second, full ranking never ran
    assert len(full) == 2 and full[0] == stopped[0] and full[1] == alone[0]
    assert stopped[0]["users"] == alone[0]["users"] // 2
