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

from genre_lib.classifier import (
    experiment,
    genre_data,  # noqa: E402
    registry,
    training,
)
from genre_lib.config.settings import ClassifierConfig  # noqa: E402
from genre_lib.lake.storage import Lake  # noqa: E402

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
    return genre_data.build_data(items, emb, GENRES)


@pytest.fixture(scope="module")
def result(data):
    return experiment.run_experiment(data, ClassifierConfig(**FAST))


def test_learns_well_above_the_prior(result):
    m = result.metrics
    assert m["test_macro_f1"] > 0.7
    assert m["test_macro_f1"] > m["prior_test_macro_f1"] + 0.3
    assert {"tfidf_test_macro_f1", "test_micro_f1", "test_f1.Sci-Fi", "test_ap.Action"} <= set(m)
    assert 0 <= m["tfidf_test_macro_f1"] <= 1


def test_training_is_deterministic_on_cpu(data):
    tr = genre_data.split_items(data.item_ids[data.labelled], 0.15, 0.15, 13) == "train"
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
    scrambled = genre_data.GenreData(data.item_ids, data.X, Y, data.labelled, data.texts, data.genres, data.model_id)
    other = experiment.run_experiment(scrambled, ClassifierConfig(**FAST))
    np.testing.assert_array_equal(other.thresholds, result.thresholds)
    assert other.metrics["val_macro_f1"] == result.metrics["val_macro_f1"]
    assert other.metrics["tfidf_val_macro_f1"] == result.metrics["tfidf_val_macro_f1"]
    assert other.metrics["test_macro_f1"] < result.metrics["test_macro_f1"] - 0.3


def test_split_by_item_is_stable_as_the_catalogue_grows():
    ids = np.array([f"i{i}" for i in range(2000)])
    split = genre_data.split_items(ids, 0.15, 0.15, 13)
    grown = genre_data.split_items(np.concatenate([ids, [f"new{i}" for i in range(500)]]), 0.15, 0.15, 13)
    assert (grown[:2000] == split).all()
    assert abs((split == "test").mean() - 0.15) < 0.03 and abs((split == "val").mean() - 0.15) < 0.03


def test_baseline_text_never_contains_the_labels():
    items = pd.DataFrame({"title": ["Alien"], "description": ["In space"], "tags": ["classic"],
                          "genres": [["Horror", "Sci-Fi"]]})
    assert genre_data.item_text(items)[0] == "Alien. In space. classic"
    assert genre_data.template_leaks_labels("{title}. {genres}. {description}")
    assert not genre_data.template_leaks_labels("{title}. {description} {tags}")


def test_scores_table_covers_every_item_and_genre(data, result):
    P = np.full(data.Y.shape, 0.25)
    df = genre_data.score_items(data, P)
    assert len(df) == len(data.item_ids) * len(GENRES)
    lab = df[df.source == "labelled"]
    assert set(df.source) == {"labelled", "predicted"}
    assert set(lab.probability) == {0.25, 1.0}  # a label stays certain, other genres are soft
    assert (df[df.source == "predicted"].probability == 0.25).all()


# --- the job, MLflow registry and champion gate ------------------------------------------------------
@pytest.fixture()
def lake_env(tmp_path, mlflow_uri):
    lake = Lake(str(tmp_path / "lake"))
    items, emb = synthetic_catalogue()
    man = {"run_id": "test", "config_hash": "x"}
    lake.write_pandas("items_clean", DS, items, man)
    lake.write_pandas("item_embeddings", DS, emb, man)
    lake.write_pandas("genre_vocab", DS, pd.DataFrame({"genre": GENRES, "genre_index": range(len(GENRES))}), man)
    yield lake, mlflow_uri


def run_job(lake: Lake, *sets: str) -> int:
    from jobs import train_classifier

    fast = [f"classifier.{k}={v}" for k, v in FAST.items()]
    argv = ["--config", "configs/default.yaml", "--run-date", DS, "--set", f"lake.root={lake.root}",
            "--set", "encoder.text_template={title}. {description} {tags}"]
    for s in [*fast, *sets]:
        argv += ["--set", s]
    return train_classifier.main(argv)


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
    # the default input carries the item's word vectors (word branch, classifier.word_branch=auto)
    assert meta["features"].startswith("embedding16+words32x384:") and meta["dim"] == 16 + 32 * 384
    items, emb = synthetic_catalogue()
    from genre_lib.classifier.model import predict_proba
    data = genre_data.build_data(items, emb, GENRES)  # the head's part of the input, words left as zeros
    x = np.hstack([data.X, np.zeros((len(data.X), 32 * 384), np.float32)])
    P = predict_proba(model, x)
    assert P.shape == (260, len(GENRES))


def manifest_version(lake: Lake) -> str:
    return str(lake.manifest("item_genre_scores", DS)["model_version"])


def test_incompatible_champion_is_named():
    meta = {"genres": GENRES, "dim": 16, "embedding_model_id": "a"}
    assert registry.incompatibility(meta, GENRES, 16, "a") is None
    assert "vocabulary" in registry.incompatibility(meta, GENRES[:-1], 16, "a")
    assert "dim" in registry.incompatibility(meta, GENRES, 384, "a")
    assert "embedding model" in registry.incompatibility(meta, GENRES, 16, "b")


# --- the word branch ---------------------------------------------------------------------------------
def fake_word_encoder(words):
    """A deterministic random unit vector per word (identity, no semantics): enough to test the wiring."""
    import hashlib
    out = []
    for w in words:
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "big"))
        v = rng.normal(size=24)
        out.append(v / np.linalg.norm(v))
    return np.array(out, dtype=np.float32).reshape(len(words), 24)


def test_item_words_drop_stop_words_and_keep_the_rarest():
    from genre_lib.classifier.model import item_words, word_features

    texts = ["The ghost and the ghost in the house", "A house of robots", "house"]
    assert item_words(texts, 8) == [["ghost", "house"], ["house", "robots"], ["house"]]
    assert item_words(texts, 1) == [["ghost"], ["robots"], ["house"]]  # "house" is in every text
    W = word_features(texts + [""], fake_word_encoder, 3).reshape(4, 3, 24)
    assert W.dtype == np.float32
    np.testing.assert_allclose(W[0, 0], fake_word_encoder(["ghost"])[0])
    assert (W[0, 2] == 0).all() and (W[3] == 0).all()  # padding and a text without words


def test_word_branch_is_chosen_when_only_the_words_carry_the_genre():
    """Item embeddings that are pure noise, genres in the words: the head alone is near the prior,
    the word branch learns, and the validation choice keeps it."""
    items, emb = synthetic_catalogue(n=400, unlabelled=0, seed=1)
    rng = np.random.default_rng(1)
    emb["vector"] = list(rng.normal(size=(len(emb), 16)).astype(np.float32))
    data = genre_data.build_data(items, emb, GENRES, fake_word_encoder, 6, "fake")
    assert data.X.shape[1] == 16 + 6 * 24 and data.features == "embedding16+words6x24:fake"
    r = experiment.run_experiment(data, ClassifierConfig(**FAST))
    assert r.metrics["word_branch"] == 1.0 and r.model.use_words
    assert r.metrics["val_macro_f1_with_words"] > r.metrics["val_macro_f1_head_only"] + 0.2
    assert r.metrics["test_macro_f1"] > r.metrics["prior_test_macro_f1"] + 0.15
    off = experiment.run_experiment(data, ClassifierConfig(**FAST, word_branch="off"))
    assert off.metrics["word_branch"] == 0.0 and not off.model.use_words
    assert off.metrics["test_macro_f1"] < r.metrics["test_macro_f1"] - 0.15


def test_word_branch_model_exports_and_scores_any_batch(tmp_path):
    """The flat input [embedding | words] survives torch.export with a dynamic batch, as MLflow logs it."""
    from genre_lib.classifier.model import GenreClassifier, predict_proba

    torch.manual_seed(0)
    model = GenreClassifier(16, 5, hidden=8, word_dim=24, max_words=6).eval()
    x = np.random.default_rng(0).normal(size=(7, 16 + 6 * 24)).astype(np.float32)
    x[0, 16:] = 0  # an item without words
    ex = torch.export.export(model, (torch.from_numpy(x[:3]),),
                             dynamic_shapes=[{0: torch.export.Dim.AUTO}])
    np.testing.assert_allclose(predict_proba(ex.module(), x), predict_proba(model, x), rtol=1e-5, atol=1e-6)


def test_a_champion_with_another_input_layout_is_named():
    meta = {"genres": GENRES, "dim": 16 + 6 * 24, "embedding_model_id": "a", "features": "embedding16+words6x24:x"}
    assert registry.incompatibility(meta, GENRES, 160, "a", "embedding16+words6x24:x") is None
    assert "input layout" in registry.incompatibility(meta, GENRES, 160, "a", "embedding16+words6x24:y")
    old = {"genres": GENRES, "dim": 16, "embedding_model_id": "a"}  # logged before the word branch
    assert registry.incompatibility(old, GENRES, 16, "a", "embedding16") is None
