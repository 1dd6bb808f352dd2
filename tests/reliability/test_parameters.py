"""A wrong parameter is refused before any work starts, with a message naming the field, both in
the DAG's first task (the trigger form) and in every job's command line."""

import pytest

from genre_lib.config.settings import PROJECT_ROOT, ConfigError
from genre_lib.orchestration import jobrun
from genre_lib.orchestration.pipeline import resolve_run


@pytest.fixture(autouse=True)
def spark_starts(monkeypatch):
    """Every Spark session the pipeline creates goes through genre_lib.lake.spark.get_spark: count them."""
    import genre_lib.lake.spark

    calls = []
    monkeypatch.setattr(genre_lib.lake.spark, "get_spark", lambda *a, **k: calls.append(a) or pytest.fail("Spark started"))
    return calls

GOOD = {"config": "configs/default.yaml", "run_date": "2026-11-22", "overrides": []}


@pytest.mark.parametrize("params, field", [
    ({"run_date": "2026-02-30"}, "run_date"),
    ({"run_date": "tomorrow"}, "run_date"),
    ({"overrides": ["recommend.top_k=10"]}, "recommend.top_k"),
    ({"overrides": ["recommend.top_n=ten"]}, "recommend.top_n"),
    ({"overrides": ["genres.event_weights={view: -1.0}"]}, "genres.event_weights"),
    ({"overrides": ["recommend.weights.genre=-1"]}, "recommend.weights.genre"),
    ({"overrides": ["data.format=movielens-100k", "data.path=data/no-such-folder"]}, "data.path"),
    ({"overrides": ["lake.root=/etc"]}, "lake.root"),
    ({"overrides": ["lake.root=../../outside"]}, "lake.root"),
    ({"overrides": ["data.path=/tmp/elsewhere"]}, "data.path"),
    ({"overrides": [f"lake.root={PROJECT_ROOT}/../../etc"]}, "lake.root"),
    ({"overrides": [f"data.path={PROJECT_ROOT}/lake/../../../tmp/x"]}, "data.path"),
    ({"config": f"{PROJECT_ROOT}/configs/../../../etc/passwd"}, "config"),
    ({"config": "/etc/passwd"}, "config"),
    ({"config": "configs/missing.yaml"}, "config"),
    ({"overrides": "recommend.top_n"}, "override"),
])
def test_trigger_form_is_validated(params, field, monkeypatch, spark_starts):
    monkeypatch.delenv("GENRE_ALLOWED_ROOTS", raising=False)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        resolve_run({**GOOD, **params}, "manual__test")
    assert spark_starts == []


def test_symlink_out_of_the_project_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("GENRE_ALLOWED_ROOTS", raising=False)
    link = PROJECT_ROOT / f".test-link-{tmp_path.name}"
    link.symlink_to(tmp_path)
    try:
        with pytest.raises(ConfigError, match=r"lake\.root"):
            resolve_run({**GOOD, "overrides": [f"lake.root={link.name}/lake"]}, "manual__link")
    finally:
        link.unlink()


def test_allowed_roots_from_environment(tmp_path, monkeypatch):
    # both path keys point outside the project, into a root the operator allowed; the data folder
    # exists there, so the run resolves (a clean clone has no data/synthetic of its own)
    monkeypatch.setenv("GENRE_ALLOWED_ROOTS", str(tmp_path))
    (tmp_path / "data").mkdir()
    overrides = [f"lake.root={tmp_path}/lake", f"data.path={tmp_path}/data"]
    out = resolve_run({**GOOD, "overrides": overrides}, "manual__ok")
    assert out["run_date"] == "2026-11-22"
    assert out["args"][-4:] == ["--set", overrides[0], "--set", overrides[1]]


@pytest.mark.parametrize("argv, field", [
    (["--run-date", "2026-13-01"], "run_date"),
    (["--run-date", "2026-11-22", "--set", "nope.key=1"], "nope"),
    (["--run-date", "2026-11-22", "--set", "clean.dedupe_window_s=-5"], "clean.dedupe_window_s"),
    (["--run-date", "2026-11-22", "--config", "configs/none.yaml"], "config"),
])
def test_jobs_refuse_before_spark(argv, field, capsys, spark_starts):
    rc = jobrun.main("clean_interactions", argv)
    assert rc == 2 and spark_starts == []
    assert field in capsys.readouterr().err



def test_clean_job_refuses_missing_data_path_before_spark(tmp_path, capsys, spark_starts):
    import clean_interactions

    rc = clean_interactions.main(["--run-date", "2026-11-22", "--set", f"data.path={tmp_path}/absent"])
    assert rc == 2 and "data.path" in capsys.readouterr().err and spark_starts == []


@pytest.mark.parametrize("job, argv, field", [
    ("embed_texts", ["--run-date", "2026-11-31"], "run_date"),
    ("train_classifier", ["--run-date", "2026-11-22", "--set", "classifier.epochs=0"], "classifier.epochs"),
    ("recommend", ["--run-date", "2026-11-22", "--set", "recommend.execution.block_users=many"],
     "recommend.execution.block_users"),
    ("evaluate", ["--run-date", "2026-11-22", "--set", "eval.protocol=random"], "eval.protocol"),
    ("clean_interactions", ["--run-date", "2026-11-22", "--set", "clean.late_days=-1"], "clean.late_days"),
    ("genre_weights", ["--run-date", "2026-11-22", "--set", "genres.multi_genre=both"], "genres.multi_genre"),
])
def test_jobs_refuse_before_torch_or_spark_is_imported(job, argv, field):
    """In a fresh interpreter, so imports made by other tests don't hide one made by the job."""
    import subprocess
    import sys

    probe = (f"import sys, runpy; sys.argv = ['jobs/{job}.py', *{argv!r}]; sys.path.insert(0, 'jobs')\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "heavy = sorted(m for m in ('torch', 'pyspark', 'transformers') if m in sys.modules)\n"
             "print('EXIT', code, 'HEAVY', heavy)\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert "EXIT 2 HEAVY []" in r.stdout, r.stdout + r.stderr[-2000:]
    assert field in r.stderr
