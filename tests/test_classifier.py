"""Genre classifier: learning, honesty of the protocol, the champion gate and the job on a tiny lake.

The fixture is synthetic on purpose (no encoder run): each genre is a gaussian cluster in a 16-d
embedding space and an item's vector is the mean of its genres' centres plus noise.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genre_lib import training  # noqa: E402
from genre_lib.config import ClassifierConfig  # noqa: E402
from genre_lib.tables import Lake  # noqa: E402

GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
WORDS = {"Action": "chase", "Comedy": "laugh", "Drama": "tears", "Horror": "ghost", "Sci-Fi": "robot"}
DS = "2026-11-22"
FAST = dict(hidden=32, epochs=40, patience=8, lr=5e-3, batch_size=64, seed=13)


def synthetic_catalogue(n: int = 260, unlabelled: int = 20, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(GENRES), dim))
    rows, vectors = [], []
    for i in range(n):
        k = rng.choice([1, 2], p=[0.7, 0.3])
        gs = sorted(rng.choice(GENRES, size=k, replace=False, p=[0.35, 0.3, 0.2, 0.1, 0.05]).tolist())
        v = centres[[GENRES.index(g) for g in gs]].mean(0) + rng.normal(scale=0.6, size=dim)
        vectors.append((v / np.linalg.norm(v)).astype(np.float32))
        noise = " ".join(rng.choice(["the", "night", "city", "love", "story"], size=2))
        words = " ".join(WORDS[g] for g in gs if rng.random() < 0.7)
        rows.append({"item_id": f"i{i:04d}", "title": f"{words} {noise}", "description": "",
                     "genres": [] if i >= n - unlabelled else gs, "tags": ""})
    items = pd.DataFrame(rows)
    emb = pd.DataFrame({"item_id": items.item_id, "text_hash": "h", "model_id": "test-encoder",
                        "dim": dim, "vector": vectors})
    return items, emb


@pytest.fixture(scope="module")
def data():
    items, emb = synthetic_catalogue()
    return training.build_data(items, emb, GENRES)


@pytest.fixture(scope="module")
def result(data):
    return training.run_experiment(data, ClassifierConfig(**FAST))


def test_learns_well_above_the_prior(result):
    m = result.metrics
    assert m["test_macro_f1"] > 0.7
    assert m["test_macro_f1"] > m["prior_test_macro_f1"] + 0.3
    assert {"tfidf_test_macro_f1", "test_micro_f1", "test_f1.Sci-Fi", "test_ap.Action"} <= set(m)
    assert 0 <= m["tfidf_test_macro_f1"] <= 1


def test_training_is_deterministic_on_cpu(data):
    tr = training.split_items(data.item_ids[data.labelled], 0.15, 0.15, 13) == "train"
    X, Y = data.X[data.labelled], data.Y[data.labelled]
    cfg = ClassifierConfig(**{**FAST, "epochs": 3})
    (a, ha), (b, hb) = (training.train_head(X[tr], Y[tr], X[~tr], Y[~tr], cfg) for _ in range(2))
    assert ha == hb
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_thresholds_come_from_validation_only(data, result):
    """Scrambling the test labels changes test scores but no threshold and no validation number."""
    lab = np.flatnonzero(data.labelled)
    test_rows = lab[result.split == "test"]
    Y = data.Y.copy()
    Y[test_rows] = np.roll(Y[test_rows], 1, axis=1)  # every test item gets other genres
    scrambled = training.GenreData(data.item_ids, data.X, Y, data.labelled, data.texts, data.genres, data.model_id)
    other = training.run_experiment(scrambled, ClassifierConfig(**FAST))
    np.testing.assert_array_equal(other.thresholds, result.thresholds)
    assert other.metrics["val_macro_f1"] == result.metrics["val_macro_f1"]
    assert other.metrics["tfidf_val_macro_f1"] == result.metrics["tfidf_val_macro_f1"]
    assert other.metrics["test_macro_f1"] < result.metrics["test_macro_f1"] - 0.3


def test_split_by_item_is_stable_as_the_catalogue_grows():
    ids = np.array([f"i{i}" for i in range(2000)])
    split = training.split_items(ids, 0.15, 0.15, 13)
    grown = training.split_items(np.concatenate([ids, [f"new{i}" for i in range(500)]]), 0.15, 0.15, 13)
    assert (grown[:2000] == split).all()
    assert abs((split == "test").mean() - 0.15) < 0.03 and abs((split == "val").mean() - 0.15) < 0.03


def test_baseline_text_never_contains_the_labels():
    items = pd.DataFrame({"title": ["Alien"], "description": ["In space"], "tags": ["classic"],
                          "genres": [["Horror", "Sci-Fi"]]})
    assert training.item_text(items)[0] == "Alien. In space. classic"
    assert training.template_leaks_labels("{title}. {genres}. {description}")
    assert not training.template_leaks_labels("{title}. {description} {tags}")


def test_scores_table_covers_every_item_and_genre(data, result):
    P = np.full(data.Y.shape, 0.25)
    df = training.score_items(data, P)
    assert len(df) == len(data.item_ids) * len(GENRES)
    lab = df[df.source == "labelled"]
    assert set(df.source) == {"labelled", "predicted"}
    assert set(lab.probability) == {0.25, 1.0}  # a label stays certain, other genres are soft
    assert (df[df.source == "predicted"].probability == 0.25).all()


# --- the job, MLflow registry and champion gate ------------------------------------------------------
@pytest.fixture()
def lake_env(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    mlflow.set_tracking_uri(uri)
    # artifacts inside tmp_path, not the repository's mlartifacts/
    mlflow.create_experiment("genre-nightly", artifact_location=(tmp_path / "artifacts").as_uri())
    lake = Lake(str(tmp_path / "lake"))
    items, emb = synthetic_catalogue()
    man = {"run_id": "test", "config_hash": "x"}
    lake.write_pandas("items_clean", DS, items, man)
    lake.write_pandas("item_embeddings", DS, emb, man)
    lake.write_pandas("genre_vocab", DS, pd.DataFrame({"genre": GENRES, "genre_index": range(len(GENRES))}), man)
    yield lake, uri
    mlflow.set_tracking_uri(None)


def run_job(lake: Lake, *sets: str) -> int:
    from jobs import train_classifier

    fast = [f"classifier.{k}={v}" for k, v in FAST.items()]
    argv = ["--config", "configs/default.yaml", "--run-date", DS, "--set", f"lake.root={lake.root}",
            "--set", "encoder.text_template={title}. {description} {tags}"]
    for s in [*fast, *sets]:
        argv += ["--set", s]
    return train_classifier.jobrun.main(train_classifier.STAGE, train_classifier.work, argv)


def test_job_registers_gates_and_scores_by_alias(lake_env):
    import mlflow

    lake, _ = lake_env
    client = mlflow.MlflowClient()
    assert run_job(lake) == 0
    assert str(client.get_model_version_by_alias("genre-classifier", "champion").version) == "1"
    scores = lake.read_pandas("item_genre_scores", DS)
    assert len(scores) == 260 * len(GENRES) and scores.probability.between(0, 1).all()
    assert (scores.groupby("source").item_id.nunique() == pd.Series({"labelled": 240, "predicted": 20})).all()

    # a deliberately worse model: one epoch at a tiny learning rate is barely better than its init
    assert run_job(lake, "classifier.epochs=1", "classifier.lr=1e-6") == 0
    assert str(client.get_model_version_by_alias("genre-classifier", "champion").version) == "1"
    v2 = client.get_model_version("genre-classifier", "2")
    assert v2.tags["gate_decision"] == "kept_champion"
    assert float(v2.tags["gate_new_val_macro_f1"]) < float(v2.tags["gate_champion_val_macro_f1"])
    run = client.get_run(v2.run_id)
    assert run.data.tags["gate_decision"] == "kept_champion"
    assert {"test_macro_f1", "tfidf_test_macro_f1", "prior_test_macro_f1"} <= set(run.data.metrics)
    arts = {a.path for a in client.list_artifacts(v2.run_id, "plots")}
    assert {"plots/curves.png", "plots/per_genre_f1.png", "plots/genre_frequency.png"} <= arts
    assert manifest_version(lake) == "1"  # the table was scored by the champion, not by v2

    # loading by alias gives a model that scores the embeddings like the champion did
    model = mlflow.pytorch.load_model("models:/genre-classifier@champion")
    meta = mlflow.models.get_model_info("models:/genre-classifier@champion").metadata
    assert meta["genres"] == GENRES and len(meta["thresholds"]) == len(GENRES)
    items, emb = synthetic_catalogue()
    from genre_lib.classifier import predict_proba
    P = predict_proba(model, np.stack(emb.vector.to_numpy()))
    assert P.shape == (260, len(GENRES))


def manifest_version(lake: Lake) -> str:
    return str(lake.manifest("item_genre_scores", DS)["model_version"])


def test_incompatible_champion_is_named():
    meta = {"genres": GENRES, "dim": 16, "embedding_model_id": "a"}
    assert training.incompatibility(meta, GENRES, 16, "a") is None
    assert "vocabulary" in training.incompatibility(meta, GENRES[:-1], 16, "a")
    assert "dim" in training.incompatibility(meta, GENRES, 384, "a")
    assert "embedding model" in training.incompatibility(meta, GENRES, 16, "b")
