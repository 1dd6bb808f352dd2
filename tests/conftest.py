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


@pytest.fixture(scope="module")
def s3():
    """An S3 API server on 127.0.0.1 (tests/s3_server.py) for one test module, this process pointed at it."""
    from tests.s3_server import S3Server, restore_env, set_env

    server = S3Server()
    old = set_env(server)
    try:
        yield server
    finally:
        restore_env(old)
        server.stop()


# The tiny random-weight BERT of the encoder and classifier tests.
WORDS = ["the", "a", "of", "and", "film", "movie", "story", "drama", "comedy", "action", "love",
         "war", "space", "crime", "family", "music", "horror", "night", "city", "hero"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with a word + letter vocab, saved like any HF checkpoint."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "-", "'", *WORDS,
             *[c for c in letters if c not in WORDS], *[f"##{c}" for c in letters]]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # `vocab=`, not `vocab_file=`: transformers 5 ignores the latter and maps every word to [UNK]
    tok = BertTokenizerFast(vocab=str(d / "vocab.txt"), do_lower_case=True)
    assert tok("war night")["input_ids"] == [2, 9 + WORDS.index("war"), 9 + WORDS.index("night"), 3]
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).eval().save_pretrained(d)
    return str(d)
