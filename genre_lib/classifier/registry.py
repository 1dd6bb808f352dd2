"""The classifier in MLflow: logging a model with what inference needs, loading the champion by
alias, and the champion gate that decides whether a new version takes the alias."""
from __future__ import annotations

import hashlib
import logging
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import nn

from genre_lib.classifier.genre_data import GenreData
from genre_lib.classifier.model import predict_proba, tokenize
from genre_lib.classifier.thresholds import tuned_macro_f1
from genre_lib.config.settings import ClassifierConfig

log = logging.getLogger("genre.registry")

CHAMPION = "champion"
FINETUNED = "finetuned:"  # features prefix of a fine-tuned model: it reads token ids, not embeddings


def fingerprint(data: GenreData, cfg: ClassifierConfig, texts: Optional[Sequence[str]] = None) -> str:
    """What a model was trained from: the labelled embeddings, labels and settings (and, for a
    fine-tuned model, the texts it read). A rerun of the same night has the same fingerprint, so
    its identical model is no reason to move the alias."""
    h = hashlib.sha256()
    lab = data.labelled
    for part in (np.ascontiguousarray(data.X[lab], dtype=np.float32), np.ascontiguousarray(data.Y[lab])):
        h.update(part.tobytes())
    h.update(cfg.model_dump_json().encode())
    if texts is not None:
        for t in np.asarray(texts, dtype=object)[lab]:
            h.update(str(t).encode() + b"\x1f")
    return h.hexdigest()[:16]


def log_classifier(model: nn.Module, X_example: np.ndarray, genres: list[str], thresholds: np.ndarray,
                   model_id: str, registered_name: str, train_fingerprint: str = "", features: str = "",
                   tokenizer=None, extra_metadata: Optional[dict] = None) -> str:
    """Log the model to the active run (pt2 export: a traced graph, no pickle) with its signature,
    input example and the metadata inference needs; register it. Returns the new version.

    A fine-tuned model (`FinetunedClassifier`, features "finetuned:N:<encoder>") takes int64 token
    rows; its `tokenizer` is saved next to it (the model's extra_files) and `extra_metadata` holds
    what rebuilds its input from a text: text_template and max_length."""
    import tempfile
    from pathlib import Path

    import mlflow
    from mlflow.models import infer_signature

    model = model.cpu().eval()  # exported on CPU: loadable anywhere
    n = max(2, min(5, len(X_example)))  # batch > 1: the exported batch dimension stays dynamic
    dtype = np.int64 if np.issubdtype(np.asarray(X_example).dtype, np.integer) else np.float32
    example = np.ascontiguousarray(X_example[:n], dtype=dtype)
    signature = infer_signature(example, predict_proba(model, example).astype(np.float32))
    metadata = {"genres": list(genres), "thresholds": [float(t) for t in thresholds],
                "embedding_model_id": model_id, "dim": int(X_example.shape[1]),
                "features": features, "word_branch": bool(getattr(getattr(model, "head", model), "use_words", False)),
                "train_fingerprint": train_fingerprint, **(extra_metadata or {})}
    with tempfile.TemporaryDirectory() as tmp:
        extra_files = None
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
            extra_files = sorted(str(f) for f in Path(tmp).iterdir() if f.is_file())
        info = mlflow.pytorch.log_model(
            model, name="model", signature=signature, input_example=example, serialization_format="pt2",
            registered_model_name=registered_name, pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            extra_files=extra_files, metadata=metadata)
    return str(info.registered_model_version)


def is_finetuned(meta: dict) -> bool:
    return str(meta.get("features") or "").startswith(FINETUNED)


class Champion(NamedTuple):
    model: nn.Module
    meta: dict
    version: str
    tokenizer: object = None      # a fine-tuned champion's tokenizer (saved with it), else None


def load_champion(name: str) -> Optional[Champion]:
    """The current champion (model, metadata, version, tokenizer), loaded through
    `models:/<name>@champion`, or None when there is none."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, CHAMPION).version
    except MlflowException:
        return None
    uri = f"models:/{name}@{CHAMPION}"
    meta = mlflow.models.get_model_info(uri).metadata or {}
    if not is_finetuned(meta):
        return Champion(mlflow.pytorch.load_model(uri), meta, str(version))
    from pathlib import Path

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        model = mlflow.pytorch.load_model(local)
        tokenizer = AutoTokenizer.from_pretrained(str(Path(local) / "extra_files"), local_files_only=True)
    return Champion(model, meta, str(version), tokenizer)


def champion_inputs(champion: Champion, data: GenreData, rows=slice(None)) -> np.ndarray:
    """The champion's input rows for `data.item_ids[rows]`, in its own layout: a fine-tuned champion
    reads the texts rendered with *its* template and tokenizer, a head reads today's embeddings."""
    meta = champion.meta
    if is_finetuned(meta):
        texts = data.encoder_texts(meta["text_template"])[rows]
        return tokenize(champion.tokenizer, texts, int(meta["max_length"]))
    return data.X[rows]


def incompatibility(meta: dict, genres: list[str], dim: int, model_id: str, features: str = "",
                    has_texts: bool = False) -> Optional[str]:
    """Why a registered model cannot score today's inputs (None when it can). A fine-tuned model
    reads texts with its own tokenizer, so it needs only the same genres and the items' texts;
    any other model reads today's embedding rows (`dim`, `model_id`, layout `features`)."""
    if list(meta.get("genres", [])) != list(genres):
        return "genre vocabulary differs"
    if is_finetuned(meta):
        return None if has_texts else f"champion reads texts ({meta.get('features')}) and no texts were given"
    if int(meta.get("dim", -1)) != dim:
        return f"embedding dim {meta.get('dim')} != {dim}"
    if meta.get("embedding_model_id", "") != model_id:
        return f"embedding model {meta.get('embedding_model_id')!r} != {model_id!r}"
    theirs = meta.get("features") or f"embedding{meta.get('dim')}"  # versions before the word branch
    ours = features or f"embedding{dim}"
    if theirs != ours:
        return f"input layout {theirs!r} != {ours!r}"
    return None


def champion_gate(name: str, new_version: str, new_val_f1: float, Xva: np.ndarray, Yva: np.ndarray,
                  genres: list[str], model_id: str, leaks_labels: bool = False, train_fingerprint: str = "",
                  features: str = "", texts_va: Optional[Callable[[str], Sequence[str]]] = None) -> dict:
    """Move `champion` to the new version only if its validation macro-F1 is at least the current
    champion's, re-scored now on the same validation items with the same protocol (thresholds
    tuned on validation for both). The decision and both numbers become tags on the version and
    the active run.

    The champion is re-scored in its own input layout: `Xva` are today's embedding rows of the
    validation items (layout `features`, what a head champion reads, whatever the new model
    reads), and `texts_va(template)` renders the same items' texts for a fine-tuned champion. A
    champion that cannot read what is given (another vocabulary, encoder or layout) cannot be
    compared and the new version is promoted, with the reason recorded."""
    import mlflow

    client = mlflow.MlflowClient()
    current = load_champion(name)
    out = {"gate_new_version": new_version, "gate_new_val_macro_f1": new_val_f1}
    if current is None:
        promote, reason = True, "no champion yet"
    else:
        meta, champ_version = current.meta, current.version
        out["gate_champion_version"] = champ_version
        why = incompatibility(meta, genres, Xva.shape[1], model_id, features, has_texts=texts_va is not None)
        if why:
            promote, reason = True, f"champion v{champ_version} cannot score today's data: {why}"
        else:
            if is_finetuned(meta):
                Xc = tokenize(current.tokenizer, texts_va(meta["text_template"]), int(meta["max_length"]))
                out["gate_champion_input"] = "texts"
            else:
                Xc = Xva
                out["gate_champion_input"] = "embeddings"
            champ_f1 = tuned_macro_f1(predict_proba(current.model, Xc), Yva)
            out["gate_champion_val_macro_f1"] = champ_f1
            if leaks_labels:
                promote, reason = False, "encoder text template contains the genres (label leakage)"
            elif train_fingerprint and meta.get("train_fingerprint") == train_fingerprint and new_val_f1 <= champ_f1:
                promote, reason = False, f"same training data and settings as champion v{champ_version}, not better"
            else:
                promote = new_val_f1 >= champ_f1
                reason = f"new {new_val_f1:.4f} {'>=' if promote else '<'} champion {champ_f1:.4f}"
    if promote:
        client.set_registered_model_alias(name, CHAMPION, new_version)
    out["gate_decision"] = "promoted" if promote else "kept_champion"
    out["gate_reason"] = reason
    tags = {k: str(v) for k, v in out.items()}
    for k, v in tags.items():
        client.set_model_version_tag(name, new_version, k, v)
    if mlflow.active_run():
        mlflow.set_tags(tags)
    log.info("champion gate: %s (%s)", out["gate_decision"], reason)
    return out
