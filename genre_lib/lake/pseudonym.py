"""Pseudonymous user ids for published tables: a keyed hash whose key never leaves the environment."""
from __future__ import annotations

import hashlib
import hmac
import os

import numpy as np


def pseudonymize(user_ids, key_env: str) -> np.ndarray:
    """Keyed hash (HMAC-SHA256, hex, 32 chars) of each user id; the key never leaves the env var."""
    key = os.environ.get(key_env)
    if not key:
        raise RuntimeError(f"recommend.privacy.pseudonymize_users is on but the environment variable {key_env} is not set")
    k = key.encode()
    return np.asarray([hmac.new(k, str(u).encode(), hashlib.sha256).hexdigest()[:32] for u in user_ids], dtype=object)
