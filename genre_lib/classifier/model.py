"""The genre classifier: a small MLP head over item text embeddings, one sigmoid per genre, and
optionally a word branch: the same MLP idea applied to each of the item's words, max-pooled.

Multi-label on purpose (a film is often Comedy and Romance): each genre is an independent yes/no,
so `forward` returns per-genre probabilities, which is what the registry stores and what inference
reads. Training works on `logits` for the numerically stable BCE-with-logits loss. The training
loop, data and logging live in `genre_lib.stages.train_classifier`.

Why a word branch. A mean-pooled text embedding dilutes the few words that carry a genre among
the neutral ones ("The quiet man finds a zombie in the house"), while TF-IDF sees words but knows
only those seen in training. Embedding each content word with the same encoder and scoring it
(multiple-instance learning: an item has a genre if one of its words says so, max-pooling) keeps
the word-level signal *and* the encoder's knowledge that an unseen "vampire" is like "zombie".

Model input, one flat float32 row per item (so signature, export and batching stay 2-d):
    [item embedding (dim) | max_words x word vector (word_dim), zero rows = no word]
With `max_words == 0` (or `use_words=False`) the model reads only the item embedding.

`FinetunedClassifier` (classifier.finetune_layers > 0) reads texts instead of cached embeddings:
the encoder itself (its top layers tuned, the rest frozen) + the embed stage's pooling and L2 norm +
the same MLP head, one int64 row per item [input_ids (L) | attention_mask (L)] (`tokenize`).
"""
from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from genre_lib.classifier.encoder import pool

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
def predict_proba(model: nn.Module, x: np.ndarray, batch_size: Optional[int] = None) -> np.ndarray:
    """Probabilities (items x genres) from any callable model (eager, or loaded from the registry).
    Integer rows are token ids (a fine-tuned model's input) and stay int64, in smaller batches."""
    if isinstance(model, (GenreClassifier, FinetunedClassifier)):
        model.eval()  # a registry-loaded (exported) graph is already in inference mode
    tokens = np.issubdtype(np.asarray(x).dtype, np.integer)
    dtype = np.int64 if tokens else np.float32
    batch_size = batch_size or (128 if tokens else 4096)
    device = next(iter(model.parameters()), torch.empty(0)).device
    out = [model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=dtype)).to(device)).cpu()
           for i in range(0, len(x), batch_size)]
    if not out:
        return np.zeros((0, 0), dtype=np.float64)
    return torch.cat([o.detach() for o in out]).double().numpy()


# --- fine-tuning the encoder ------------------------------------------------------------------------
def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a HF encoder, bottom first (BERT/MiniLM/RoBERTa/MPNet: encoder.layer;
    DistilBERT: transformer.layer)."""
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        mod = encoder
        for part in path.split("."):
            mod = getattr(mod, part, None)
        if isinstance(mod, nn.ModuleList) and len(mod):
            return mod
    raise ValueError(f"cannot find the transformer layers of {type(encoder).__name__} to fine-tune")


def freeze_below_top(encoder: nn.Module, n_tuned: int) -> list[str]:
    """Freeze the whole encoder, then unfreeze its top `n_tuned` layers and its pooler (if any).
    Returns the names of the trainable parameters. `n_tuned` above the layer count is an error."""
    layers = encoder_layers(encoder)
    if not 0 <= n_tuned <= len(layers):
        raise ValueError(f"classifier.finetune_layers={n_tuned} but the encoder has only "
                         f"{len(layers)} transformer layers")
    for p in encoder.parameters():
        p.requires_grad_(False)
    tuned = list(layers[len(layers) - n_tuned:]) if n_tuned else []
    pooler = getattr(encoder, "pooler", None)
    for m in tuned + ([pooler] if isinstance(pooler, nn.Module) else []):
        for p in m.parameters():
            p.requires_grad_(True)
    return [n for n, p in encoder.named_parameters() if p.requires_grad]


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> np.ndarray:
    """(n, 2 * max_length) int64 rows [input_ids | attention_mask], right-padded, truncated."""
    texts = [t if isinstance(t, str) else "" for t in texts]
    out = np.zeros((len(texts), 2 * max_length), dtype=np.int64)
    if not texts:
        return out
    ids = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    out[:, :max_length] = tokenizer.pad_token_id or 0
    for i, row in enumerate(ids):
        out[i, :len(row)] = row
        out[i, max_length:max_length + len(row)] = 1
    return out


def longest_tokens(tokenizer, texts: Sequence[str], cap: int) -> int:
    """The token length of the longest text (special tokens included), at most `cap`."""
    ids = tokenizer([t if isinstance(t, str) else "" for t in texts], truncation=True, max_length=cap,
                    return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    return max([len(r) for r in ids] + [2])


class FinetunedClassifier(nn.Module):
    """Encoder (top `n_tuned` layers trainable, embeddings and lower layers frozen) + pooling + L2 norm
    (as the embed stage: `encoder.pooling`, `encoder.normalize`) + a `GenreClassifier` head.

    Input: int64 (n, 2 * max_length) rows from `tokenize`. Eagerly, the batch is cut to its longest
    text (padding is masked anyway); an exported graph runs at the full `max_length`. Frozen parts
    stay in eval mode while training (a frozen layer is a fixed function: no dropout in it)."""

    def __init__(self, encoder: nn.Module, n_genres: int, n_tuned: int, max_length: int, hidden: int = 256,
                 dropout: float = 0.2, pooling: str = "mean", normalize: bool = True, token_types: bool = True):
        super().__init__()
        self.encoder = encoder
        self.n_tuned, self.max_length = int(n_tuned), int(max_length)
        self.pooling, self.normalize, self.token_types = pooling, bool(normalize), bool(token_types)
        self.tuned_names = freeze_below_top(encoder, n_tuned)
        self.dim = int(encoder.config.hidden_size)
        self.head = GenreClassifier(self.dim, n_genres, hidden, dropout, use_words=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            _eval_frozen(self.encoder)
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        L = self.max_length
        ids, mask = x[:, :L], x[:, L:2 * L]
        if not torch.compiler.is_exporting() and len(x):
            n = max(int(mask.sum(1).max()), 1)
            ids, mask = ids[:, :n], mask[:, :n]
        kwargs = {"input_ids": ids, "attention_mask": mask}
        if self.token_types:
            kwargs["token_type_ids"] = torch.zeros_like(ids)
        return pool(self.encoder(**kwargs).last_hidden_state, mask, self.pooling, self.normalize)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.logits(self.embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def _eval_frozen(module: nn.Module) -> None:
    """Put every submodule whose parameters are all frozen in eval mode; descend into mixed ones.
    Parameter-less modules (dropout) inside a trainable block keep the training mode."""
    for child in module.children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            child.eval()
        elif params:
            _eval_frozen(child)


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
