"""Stage embed_texts: items_clean -> item_embeddings, a table that is its own cache.

A row's `text_hash` covers everything that decides the vector: the exact text fed to the model, the
model (name and a fingerprint of its files), max_length, pooling and normalisation. A night reads
the latest earlier partition, carries forward every vector whose hash it still needs, and embeds
only the rest (nothing at all, model not even loaded, when the catalogue did not change).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd

from genre_lib.classifier.encoder import TextEncoder, cache_key_prefix, item_texts, spark_encode, text_hashes
from genre_lib.config.settings import EncoderConfig

log = logging.getLogger("genre.embed")


@dataclass
class EmbedResult:
    table: pd.DataFrame          # the item_embeddings partition, one row per item
    embedded: int                # distinct texts run through the model tonight
    reused: int                  # items whose vector came from the previous partition
    stats: dict                  # encoder settings and timings for MLflow


def embed_items(items: pd.DataFrame, cfg: EncoderConfig, previous: Optional[pd.DataFrame] = None,
                encode: Optional[Callable[[list[str]], tuple[np.ndarray, dict]]] = None) -> EmbedResult:
    """Vectors for every item in `items` (items_clean rows), reusing `previous` (an earlier
    item_embeddings partition) wherever the key matches. `encode(texts) -> (vectors, settings)`
    is called only for texts that still need a vector; by default it loads the model then."""
    texts = item_texts(items, cfg.text_template)
    hashes = text_hashes(texts, cache_key_prefix(cfg))
    known: dict[str, np.ndarray] = {}
    if previous is not None and not cfg.full_refresh and len(previous):
        # the key already covers the model; the model_id check only guards against foreign rows
        prev = previous[previous["model_id"] == cfg.model]
        known = dict(zip(prev["text_hash"], prev["vector"]))
    todo: dict[str, str] = {}
    for h, t in zip(hashes, texts):
        if h not in known and h not in todo:
            todo[h] = t  # identical texts are embedded once
    stats: dict = {}
    fresh: dict[str, np.ndarray] = {}
    if todo:
        t0 = time.time()
        vecs, stats = (encode or _local_encode(cfg))(list(todo.values()))
        total = time.time() - t0
        secs = stats.get("encode_seconds", total)  # model loading (and imports) not counted
        stats = {**stats, "embed_seconds": total, "encode_seconds": secs,
                 "texts_per_s": len(todo) / max(secs, 1e-9)}
        fresh = dict(zip(todo.keys(), vecs))
    reused = sum(1 for h in hashes if h in known)
    vectors = [np.asarray(known[h] if h in known else fresh[h], dtype=np.float32) for h in hashes]
    dim = len(vectors[0]) if vectors else 0
    table = pd.DataFrame({"item_id": items["item_id"].astype(str).to_numpy(), "text_hash": hashes,
                          "model_id": cfg.model, "dim": np.int32(dim), "vector": vectors})
    return EmbedResult(table=table, embedded=len(todo), reused=reused, stats={**stats, "dim": dim})


def _local_encode(cfg: EncoderConfig) -> Callable[[list[str]], tuple[np.ndarray, dict]]:
    def run(texts: list[str]):
        t0 = time.time()
        enc = TextEncoder.from_config(cfg)
        load = time.time() - t0
        log.info("encoder %s loaded in %.1fs; embedding %d texts", enc.settings(), load, len(texts))
        t1 = time.time()
        vecs = enc.encode(texts)
        secs = time.time() - t1
        log.info("embedded %d texts in %.1fs (%.0f texts/s)", len(texts), secs, len(texts) / max(secs, 1e-9))
        return vecs, {**enc.settings(), "load_seconds": load, "encode_seconds": secs}
    return run


def _spark_encode(spark, cfg: EncoderConfig) -> Callable[[list[str]], tuple[np.ndarray, dict]]:
    def run(texts: list[str]):
        return spark_encode(spark, texts, cfg), {"model": cfg.model, "device": "executors",
                                                  "dtype": "auto", "batch_size": cfg.batch_size,
                                                  "token_budget": cfg.token_budget}
    return run


def embed_night(lake, ds, cfg: EncoderConfig, manifest: dict, spark=None) -> EmbedResult:
    """One night: items_clean at `ds` in, item_embeddings at `ds` committed, counts in its
    manifest. The cache is the latest committed item_embeddings partition on or before `ds`."""
    items = lake.read_pandas("items_clean", ds)
    # the latest commit on or before the night: a rerun of the night reuses its own earlier vectors
    prev_ds = None if cfg.full_refresh else lake.latest("item_embeddings", ds)
    previous = lake.read_pandas("item_embeddings", prev_ds, columns=["text_hash", "model_id", "vector"]) if prev_ds else None
    encode = None
    if cfg.engine == "spark":
        if spark is None:
            raise ValueError("encoder.engine=spark needs a SparkSession")
        encode = _spark_encode(spark, cfg)
    res = embed_items(items, cfg, previous, encode)
    lake.write_pandas("item_embeddings", ds, res.table, manifest={**manifest, "embedded": res.embedded,
                                                     "reused": res.reused, "cache_from": prev_ds,
                                                     "model_id": cfg.model, "dim": res.stats["dim"]})
    res.stats["cache_from"] = prev_ds
    return res


def run(ctx) -> dict:
    import mlflow

    enc = ctx.cfg.encoder
    res = embed_night(ctx.lake, ctx.ds, enc, ctx.manifest(), spark=ctx.spark if enc.engine == "spark" else None)
    settings = {k: v for k, v in res.stats.items() if isinstance(v, str) or k in ("batch_size", "token_budget", "threads")}
    mlflow.log_params({f"embed.{k}": v for k, v in {**settings, "engine": enc.engine}.items() if v is not None})
    return {"items": len(res.table), "embedded": res.embedded, "reused": res.reused,
            **{k: v for k, v in res.stats.items() if k in ("dim", "texts_per_s", "encode_seconds", "load_seconds", "embed_seconds")}}
