"""Shared test set-up: offline model hub, a per-test MLflow store, one small local Spark session."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "jobs"))  # jobs import their `_bootstrap` sibling, as when run as scripts
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run the slow fault-injection trials too")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; only with --run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (make reliability)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _mlflow_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture()
def mlflow_uri(tmp_path, monkeypatch):
    """A real MLflow store in tmp_path (SQLite, artifacts beside it, not in the repository's
    mlartifacts/) with the nightly's experiment created; the URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("genre-nightly", artifact_location=(tmp_path / "artifacts").as_uri())
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def spark():
    from genre_lib.config.settings import load_config
    from genre_lib.lake.spark import get_spark

    cfg = load_config(None, ["spark.master=local[2]", "spark.shuffle_partitions=2", "spark.driver_memory=1g"])
    s = get_spark(cfg, "tests")
    yield s
    s.stop()
