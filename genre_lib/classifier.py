"""The genre classifier: a small MLP head over item text embeddings, one sigmoid per genre.

Multi-label on purpose (a film is often Comedy and Romance): each genre is an independent yes/no,
so `forward` returns per-genre probabilities, which is what the registry stores and what inference
reads. Training works on `logits` for the numerically stable BCE-with-logits loss. The training
loop, data and logging live in `genre_lib.training`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class GenreClassifier(nn.Module):
    def __init__(self, dim: int, n_genres: int, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout / 2),  # light input dropout: embeddings of short titles are noisy
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_genres),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


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
