"""The genre classifier: a small MLP head over item text embeddings, one sigmoid per genre, and
optionally a word branch: the same MLP idea applied to each of the item's words, max-pooled.

Multi-label on purpose (a film is often Comedy and Romance): each genre is an independent yes/no,
so `forward` returns per-genre probabilities, which is what the registry stores and what inference
reads. Training works on `logits` for the numerically stable BCE-with-logits loss. The training
loop, data and logging live in `genre_lib.training`.

Why a word branch. A mean-pooled text embedding dilutes the few words that carry a genre among
the neutral ones ("The quiet man finds a zombie in the house"), while TF-IDF sees words but knows
only those seen in training. Embedding each content word with the same encoder and scoring it
(multiple-instance learning: an item has a genre if one of its words says so, max-pooling) keeps
the word-level signal *and* the encoder's knowledge that an unseen "vampire" is like "zombie".

Model input, one flat float32 row per item (so signature, export and batching stay 2-d):
    [item embedding (dim) | max_words x word vector (word_dim), zero rows = no word]
With `max_words == 0` (or `use_words=False`) the model reads only the item embedding.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

_WORD = re.compile(r"[a-z][a-z'\-]*[a-z]")


def _mlp(dim: int, n_out: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout / 2),  # light input dropout: embeddings of short titles are noisy
        nn.Linear(dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_out),
    )


class GenreClassifier(nn.Module):
    def __init__(self, dim: int, n_genres: int, hidden: int = 256, dropout: float = 0.2,
                 word_dim: int = 0, max_words: int = 0, use_words: bool = True):
        super().__init__()
        self.dim, self.word_dim, self.max_words = dim, word_dim, max_words
        self.use_words = bool(use_words and word_dim > 0 and max_words > 0)
        self.net = _mlp(dim, n_genres, hidden, dropout)
        if self.use_words:
            self.word_net = _mlp(word_dim, n_genres, hidden, dropout)

    @property
    def input_dim(self) -> int:
        return self.dim + self.word_dim * self.max_words

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x[:, :self.dim])
        if self.use_words:
            words = x[:, self.dim:self.input_dim].reshape(-1, self.max_words, self.word_dim)
            present = words.abs().sum(-1, keepdim=True) > 0                 # (n, K, 1)
            flat, keep = words.reshape(-1, self.word_dim), present.reshape(-1)
            if torch.compiler.is_exporting():  # static graph: score every slot, mask the empty ones
                per_word = self.word_net(flat).masked_fill(~keep[:, None], -1e4)
            else:  # eager (training, scoring): only the slots holding a word, same result
                per_word = flat.new_full((flat.shape[0], out.shape[1]), -1e4)
                per_word[keep] = self.word_net(flat[keep])
            pooled = per_word.reshape(-1, self.max_words, out.shape[1]).amax(1)     # (n, G)
            out = out + torch.where(present.any(1), pooled, torch.zeros_like(pooled))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Probabilities (items x genres) from any callable model (eager, or loaded from the registry)."""
    if isinstance(model, GenreClassifier):
        model.eval()  # a registry-loaded (exported) graph is already in inference mode
    out = [model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)))
           for i in range(0, len(x), batch_size)]
    if not out:
        return np.zeros((0, 0), dtype=np.float64)
    return torch.cat([o.detach() for o in out]).double().numpy()


# --- word features ---------------------------------------------------------------------------------
def item_words(texts: Sequence[str], max_words: int) -> list[list[str]]:
    """Per text its distinct content words (lower case, no stop words), at most `max_words`: when
    there are more, the rarest across `texts` (document frequency; no label is used), ties in text
    order. Deterministic."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    per = []
    for t in texts:
        seen: dict[str, None] = {}
        for w in _WORD.findall(str(t or "").lower()):
            if w not in ENGLISH_STOP_WORDS:
                seen.setdefault(w, None)
        per.append(list(seen))
    df: dict[str, int] = {}
    for ws in per:
        for w in ws:
            df[w] = df.get(w, 0) + 1
    out = []
    for ws in per:
        if len(ws) > max_words:
            keep = set(sorted(ws, key=lambda w, order={w: i for i, w in enumerate(ws)}: (df[w], order[w]))[:max_words])
            ws = [w for w in ws if w in keep]
        out.append(ws)
    return out


def word_features(texts: Sequence[str], encode: Callable[[list[str]], np.ndarray], max_words: int) -> np.ndarray:
    """(n, max_words * word_dim) float32: each text's words embedded one by one with `encode`
    (the item encoder), zero rows where a text has fewer words. Each distinct word is encoded once."""
    words = item_words(texts, max_words)
    vocab = sorted({w for ws in words for w in ws})
    vecs = np.asarray(encode(vocab), dtype=np.float32) if vocab else np.zeros((0, 1), np.float32)
    dim = vecs.shape[1] if len(vocab) else 1
    index = {w: i for i, w in enumerate(vocab)}
    out = np.zeros((len(words), max_words, dim), dtype=np.float32)
    for i, ws in enumerate(words):
        for k, w in enumerate(ws):
            out[i, k] = vecs[index[w]]
    return out.reshape(len(words), max_words * dim)
