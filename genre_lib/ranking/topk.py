"""Exact top-k per row of a score matrix, and the all-user top-k that scores one block of users at
a time so memory is bounded by block_users x items."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

import numpy as np
import scipy.sparse as sp
import torch

NEG = float("-inf")


def _seen_mask(seen: sp.csr_matrix, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    sub = seen[rows]
    r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    return torch.from_numpy(r), torch.from_numpy(sub.indices.astype(np.int64))


def topk_rows(scores: torch.Tensor, k: int, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-row top k, sorted descending. The k best lie in the k chunks (of `chunk` columns)
    with the largest maxima, so one vectorised max pass prunes each row to k*chunk candidates
    (faster than torch.topk over a long row; `bench/topk.py` measures it). Only the k winners'
    columns are computed, and a ragged tail is merged as its own small top k, not concatenated."""
    b, n = scores.shape
    k = min(k, n)
    g = n // chunk
    if g <= k or chunk <= 1:
        return torch.topk(scores, k, dim=1)
    main = scores[:, :g * chunk].view(b, g, chunk)
    _, ci = torch.topk(main.amax(dim=2), k, dim=1, sorted=False)
    cand = main[torch.arange(b)[:, None], ci].reshape(b, k * chunk)
    v, j = torch.topk(cand, k, dim=1)
    col = torch.gather(ci, 1, torch.div(j, chunk, rounding_mode="floor")) * chunk + j % chunk
    if n > g * chunk:  # the ragged tail: its own top k, merged (no copy of the candidates)
        tv, tj = torch.topk(scores[:, g * chunk:], min(k, n - g * chunk), dim=1)
        v, m = torch.topk(torch.cat([v, tv], 1), k, dim=1)
        col = torch.gather(torch.cat([col, tj + g * chunk], 1), 1, m)
    return v, col


def block_topk_many(score_block: Callable[[np.ndarray], Iterable[tuple[Any, torch.Tensor]]], names: list,
                    n_users: int, k: int, block_users: int, seen: Optional[sp.csr_matrix] = None,
                    on_block: Optional[Callable] = None) -> dict:
    """block_topk for several score matrices over the same users: `score_block(rows)` yields
    (name, len(rows) x items scores) one at a time, so a block's shared work is done once and only
    one name's scores are alive beside it. `on_block(name, rows, values, idx)`. Returns name ->
    (values, item indices)."""
    out = {n: ([], []) for n in names}
    for start in range(0, n_users, block_users):
        rows = np.arange(start, min(start + block_users, n_users))
        mask = _seen_mask(seen, rows) if seen is not None else None
        for name, s in score_block(rows):
            if mask is not None:
                s[mask] = NEG
            v, i = topk_rows(s, k)
            if on_block is not None:
                on_block(name, rows, v, i)
            out[name][0].append(v)
            out[name][1].append(i)
            del s
    return {n: (torch.cat(v), torch.cat(i)) if v else (torch.empty(0, k), torch.empty(0, k, dtype=torch.long))
            for n, (v, i) in out.items()}
