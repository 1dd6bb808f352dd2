"""The genre mixture scorer (`recommend.genre.scorer: mixture`): P(i | u) = sum_c tau_uc phi_c(i).

A user picks a genre by taste tau_u, then an item by the genre's distribution phi_c over items.
Fitted by EM on the binary histories (no decay: pLSA whose topics are the catalogue's genres, as
multiplicative updates): an event's genre responsibility is tau_uc phi_c(i) / P(i | u), so an item
in two genres counts for the one its user favours, and each genre's item shares come from the events
attributed to it. phi_c's Dirichlet prior is the items' genre scores (BETA pseudo-events each), so
an item stays out of a genre it has no score for, and a cold item is ranked by its scores alone.
The seed's R(u,i) spreads an item's events evenly over its genres and ranks by taste alone.

Fitted in passes over user blocks (memory: the catalogue x genres and one block; model.fit_items):
each pass solves each block's tastes for the current phi (`recommend.genre.mixture_steps` steps from uniform) and
adds their responsibilities into the next phi. The ranked tastes (model.fit_users) start from the
user's published genre weights.

    item_start(membership, item_users) -> phi   the plug-in start: each genre's share of distinct users
    tastes(x, phi, start, steps) -> tau         a block's users (x: users x items, binary history)
    item_update(x, phi, tau) -> sums            items x genres, added over blocks, then item_finish
    item_finish(sums, membership) -> phi
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp

# Dirichlet smoothing: tau_u's prior (alpha pseudo-events per genre) and phi's (beta x membership per
# item). On the synthetic profile's validation split alpha 0.3-1 and beta 0.1-2 scored within 0.004
# of each other; alpha 3 lost 0.015 (over-smoothed tastes)
ALPHA, BETA = 1.0, 0.5
_CHUNK = 1 << 22  # users x items entries per dense product (32 MB)


def support(item_genre: np.ndarray, has_genre: np.ndarray) -> np.ndarray:
    """Items x genres: how much an item belongs to each genre (its scores: labels, or the
    classifier's probabilities); an item without scores belongs to every genre by 1 / genres (in
    all, as much as a one-genre item: 1 in each would put it first for every user when cold)."""
    m = item_genre.astype(np.float64).copy()
    m[~has_genre] = 1.0 / max(m.shape[1], 1)
    return m


def _norm_cols(a: np.ndarray) -> np.ndarray:
    tot = a.sum(0, keepdims=True)
    return a / np.where(tot > 0, tot, 1.0)


def item_start(membership: np.ndarray, item_users: np.ndarray) -> np.ndarray:
    return _norm_cols(membership * (item_users[:, None] + 1.0))


def _ratio(x: sp.csr_matrix, rows: np.ndarray, tau: np.ndarray, phi: np.ndarray) -> sp.csr_matrix:
    """x / P(i|u) on x's pattern (`rows`: each stored entry's row). P comes from dense products of
    a few users at a time (_CHUNK entries): BLAS, instead of gathering two rows per stored entry."""
    p = np.empty(len(x.data))
    step = max(1, _CHUNK // max(x.shape[1], 1))
    for r0 in range(0, x.shape[0], step):
        lo, hi = x.indptr[r0], x.indptr[min(r0 + step, x.shape[0])]
        p[lo:hi] = (tau[r0:r0 + step] @ phi.T)[rows[lo:hi] - r0, x.indices[lo:hi]]
    return sp.csr_matrix((x.data / np.maximum(p, 1e-300), x.indices, x.indptr), shape=x.shape)


def _rows(x: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))


def tastes(x: sp.csr_matrix, phi: np.ndarray, start: Optional[np.ndarray], steps: int,
           alpha: float = ALPHA) -> np.ndarray:
    """tau for x's users: `steps` EM steps with phi fixed, a Dirichlet(1 + alpha) prior; a user
    without events keeps its start (uniform where it has none)."""
    x = sp.csr_matrix(x, dtype=np.float64)
    n, g = x.shape[0], phi.shape[1]
    tau = np.full((n, g), 1.0 / max(g, 1)) if start is None else start.astype(np.float64).copy()
    tau[tau.sum(1) <= 0] = 1.0 / max(g, 1)
    tau = (tau + 1e-6) / (tau + 1e-6).sum(1, keepdims=True)  # every genre reachable from the start
    rows, events = _rows(x), np.diff(x.indptr) > 0
    for _ in range(steps):
        t = tau * (_ratio(x, rows, tau, phi) @ phi) + alpha
        tau = np.where(events[:, None], t / t.sum(1, keepdims=True), tau)
    return tau


def item_update(x: sp.csr_matrix, phi: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """The block's expected events per (item, genre): sum over its events of the responsibilities."""
    x = sp.csr_matrix(x, dtype=np.float64)
    return phi * (_ratio(x, _rows(x), tau, phi).T @ tau)


def item_finish(sums: np.ndarray, membership: np.ndarray, beta: float = BETA) -> np.ndarray:
    """phi from the summed responsibilities, with beta x membership pseudo-events: a Dirichlet prior
    that keeps an item out of the genres it has no score for."""
    return _norm_cols(sums + beta * membership)
