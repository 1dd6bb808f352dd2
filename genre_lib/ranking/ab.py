"""A/B variants: which variant each user gets, and which config and model rank that user's list.

    assign(user_ids, ab)                  -> variant name per user (np.ndarray of str)
    variant_config(cfg, variant)          -> the PipelineConfig the variant runs with
    arms(cfg, model, refit, users=None)   -> one Arm per variant: its config, model and user rows

The rule, used by the recommend stage and by evaluation alike: u = the first 8 bytes of
HMAC-SHA256(key = ab.salt, message = the raw user id), big-endian, / 2^64, a uniform in [0, 1);
the user gets the first variant (in declared order) whose cumulative share exceeds u. Nothing
else enters, so a user keeps their variant across nights, catalogues and user counts until the
salt changes, and a new salt re-draws everyone independently of the old assignment.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Callable, NamedTuple, Optional

import numpy as np

from genre_lib.config.ranking import RecommendConfig
from genre_lib.config.settings import AbConfig, AbVariant, PipelineConfig, with_overrides

# Settings that act only when ranking, not when fitting: variants that differ in these alone share
# one fitted model (anything else under recommend.* changes a scorer, so that variant is refit).
RANK_ONLY = ("weights", "top_n", "execution.block_users", "execution.user_block_rows")


def uniform(user_ids, salt: str) -> np.ndarray:
    """The keyed hash of each user id as a float64 in [0, 1)."""
    key = salt.encode()
    return np.fromiter((int.from_bytes(hmac.new(key, str(u).encode(), hashlib.sha256).digest()[:8], "big")
                        / 2.0 ** 64 for u in user_ids), dtype=np.float64, count=len(user_ids))


def assign(user_ids, ab: AbConfig) -> np.ndarray:
    """The variant name of each user id (object array, same order)."""
    if not ab.variants:
        raise ValueError("ab: no variants configured")
    edges = np.cumsum([v.share for v in ab.variants])
    edges[-1] = 1.0  # shares sum to 1 within 1e-6: no u may fall past the last variant
    names = np.asarray([v.name for v in ab.variants], dtype=object)
    return names[np.searchsorted(edges, uniform(user_ids, ab.salt), side="right")]


def variant_config(cfg: PipelineConfig, variant: AbVariant) -> PipelineConfig:
    """The profile with the variant's overrides applied (and no `ab` section)."""
    return with_overrides(cfg, variant.overrides)


def fit_key(rc: RecommendConfig) -> str:
    """What a fitted model depends on in the recommend section."""
    exclude: dict = {}
    for key in RANK_ONLY:  # dotted under recommend -> pydantic's nested exclude
        *sections, leaf = key.split(".")
        node = exclude
        for s in sections:
            node = node.setdefault(s, {})
        node[leaf] = True
    return json.dumps(rc.model_dump(mode="json", exclude=exclude), sort_keys=True)


class Arm(NamedTuple):
    name: Optional[str]       # None: A/B is off, one arm ranks everyone
    share: Optional[float]    # configured share
    rc: RecommendConfig       # the variant's recommend section
    model: object             # recommend.Model fitted with rc's fit-time settings
    rows: Optional[np.ndarray]  # the model's user rows in this variant (None: all users)


def arms(cfg: PipelineConfig, model, refit: Callable[[RecommendConfig], object],
         users: Optional[np.ndarray] = None) -> list[Arm]:
    """One arm per variant, in declared order, restricted to the user rows `users` when given.
    `model` was fitted with cfg.recommend; `refit(rc)` fits the same data with another recommend
    section and is called once per distinct set of fit-time settings among variants with users."""
    if not cfg.ab.variants:
        return [Arm(None, None, cfg.recommend, model, users)]
    names = assign(model.user_ids, cfg.ab)
    models = {fit_key(cfg.recommend): model}
    out = []
    for v in cfg.ab.variants:
        rc = variant_config(cfg, v).recommend
        rows = np.flatnonzero(names == v.name)
        if users is not None:
            rows = np.intersect1d(rows, users)
        key = fit_key(rc)
        if key not in models and len(rows):
            models[key] = refit(rc)
            # rows index users of `model`: a refit on the same interactions must keep the same users
            if not np.array_equal(models[key].user_ids, model.user_ids):
                raise RuntimeError(f"ab: the refit of variant {v.name} has other users than the base model")
        out.append(Arm(v.name, v.share, rc, models.get(key, model), rows))
    return out
