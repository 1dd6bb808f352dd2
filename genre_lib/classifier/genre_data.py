"""The classifier's inputs: items joined with their embeddings (and word vectors), the genre labels,
and the item split.

The split is by item and derived from a hash of the item id, so an item stays in the same split
night after night (a champion re-scored on today's validation set has never trained on it).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd

from genre_lib.classifier.model import word_features

log = logging.getLogger("genre.training")


def item_text(items: pd.DataFrame) -> pd.Series:
    """Title, description and tags: the TF-IDF baseline's text. Genres are left out on purpose:
    they are the labels, and putting them in the input would let any model read the answer."""
    parts = [items[c].fillna("").astype(str) for c in ("title", "description", "tags") if c in items]
    text = parts[0]
    for p in parts[1:]:
        text = text.str.cat(p, sep=". ")
    return text.str.replace(r"(\.\s*)+$", "", regex=True).str.strip()


def template_leaks_labels(template: str) -> bool:
    """True when the encoder's text template puts the genres into the embedded text."""
    return "{genres" in template


@dataclass
class GenreData:
    item_ids: np.ndarray          # (n,) str
    X: np.ndarray                 # (n, dim) float32 embeddings
    Y: np.ndarray                 # (n, G) float32 0/1, all zero for unlabelled items
    labelled: np.ndarray          # (n,) bool: the item had genres in items_clean
    texts: np.ndarray             # (n,) str, for the TF-IDF baseline
    genres: list[str]
    model_id: str = ""            # the encoder that made X
    emb_dim: int = 0              # X = [item embedding (emb_dim) | max_words x word vector]; 0: all of X
    word_dim: int = 0
    max_words: int = 0
    word_model_id: str = ""       # the encoder that made the word vectors
    fields: Optional[pd.DataFrame] = None  # item_id, title, description, genres, tags, in item order

    def __post_init__(self):
        if not self.emb_dim:
            self.emb_dim = int(self.X.shape[1]) - self.word_dim * self.max_words

    def encoder_texts(self, template: str) -> np.ndarray:
        """Every item's text as the embed stage renders it with `template` (a fine-tuned model's input)."""
        from genre_lib.classifier.encoder import item_texts

        if self.fields is None:
            raise ValueError("GenreData has no item fields: build it with build_data to render texts")
        return np.asarray(item_texts(self.fields, template), dtype=object)

    @property
    def features(self) -> str:
        """The input layout, stored with a model: a champion must read the same layout to compete."""
        return (f"embedding{self.emb_dim}+words{self.max_words}x{self.word_dim}:{self.word_model_id}"
                if self.max_words else f"embedding{self.emb_dim}")


def genre_order(vocab: Optional[pd.DataFrame], items: pd.DataFrame) -> list[str]:
    """The stable genre order: the versioned vocabulary when there is one, else sorted genres."""
    if vocab is not None and len(vocab):
        return vocab.sort_values("genre_index")["genre"].astype(str).tolist()
    return sorted({g for gs in items["genres"] for g in (gs if gs is not None else [])})


def build_data(items: pd.DataFrame, embeddings: pd.DataFrame, genres: list[str],
               encode_words: Optional[Callable[[list[str]], np.ndarray]] = None, max_words: int = 0,
               word_model_id: str = "") -> GenreData:
    """Join items with their embeddings (items without one are dropped, with a warning). With
    `encode_words` (the item encoder) and `max_words`, X also carries each item's word vectors
    (`classifier.word_features` over `item_text`, every item alike: no label is used)."""
    emb = embeddings.drop_duplicates("item_id", keep="last").set_index("item_id")
    items = items.drop_duplicates("item_id", keep="last")
    missing = ~items["item_id"].isin(emb.index)
    if missing.any():
        log.warning("%d of %d items have no embedding and get no genre scores", missing.sum(), len(items))
    items = items[~missing].sort_values("item_id").reset_index(drop=True)
    if items.empty:
        raise ValueError("no item has an embedding: run the embed stage first")
    e = emb.loc[items["item_id"]]
    X = np.stack(e["vector"].to_numpy()).astype(np.float32)
    index = {g: j for j, g in enumerate(genres)}
    Y = np.zeros((len(items), len(genres)), dtype=np.float32)
    unknown = 0
    for i, gs in enumerate(items["genres"]):
        for g in (gs if gs is not None else []):
            if g in index:
                Y[i, index[g]] = 1.0
            else:
                unknown += 1
    if unknown:
        log.warning("%d item genres are not in the genre vocabulary and are ignored", unknown)
    labelled = np.array([gs is not None and len(gs) > 0 for gs in items["genres"]])
    model_ids = e["model_id"].dropna().unique().tolist()
    if len(model_ids) > 1:
        raise ValueError(f"item_embeddings mixes encoders {model_ids}: vectors are not comparable")
    texts = item_text(items).to_numpy()
    word_dim = 0
    if encode_words is not None and max_words > 0:
        W = word_features(texts, encode_words, max_words)
        word_dim = W.shape[1] // max_words
        X = np.hstack([X, W])
    fields = items.reindex(columns=["item_id", "title", "description", "genres", "tags"]).reset_index(drop=True)
    return GenreData(items["item_id"].astype(str).to_numpy(), X, Y, labelled, texts, genres,
                     model_ids[0] if model_ids else "", emb_dim=X.shape[1] - word_dim * max_words if word_dim else 0,
                     word_dim=word_dim, max_words=max_words if word_dim else 0,
                     word_model_id=word_model_id if word_dim else "", fields=fields)


def split_items(item_ids: np.ndarray, val_share: float, test_share: float, seed: int) -> np.ndarray:
    """'train' / 'val' / 'test' per item from a seeded hash of its id: stable as the catalogue grows."""
    u = np.array([int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big") / 2.0 ** 64
                  for i in item_ids])
    return np.where(u < test_share, "test", np.where(u < test_share + val_share, "val", "train"))


def score_items(data: GenreData, P: np.ndarray) -> pd.DataFrame:
    """item_genre_scores rows, every item x genre. A labelled item keeps its labelled genres at 1.0
    (a label is not overruled) and gets the model's probability for the others; an unlabelled item
    gets the model's probabilities."""
    prob = np.where(data.Y > 0.5, 1.0, P.astype(np.float64))
    n, g = prob.shape
    return pd.DataFrame({
        "item_id": np.repeat(data.item_ids, g),
        "genre": np.tile(np.asarray(data.genres, dtype=object), n),
        "probability": prob.reshape(-1),
        "source": np.repeat(np.where(data.labelled, "labelled", "predicted"), g),
    })
