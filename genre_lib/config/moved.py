"""Keys that moved: an old dotted key, in a profile, a `--set` override, an A/B variant's overrides or a
tuning space, is refused with a ConfigError naming its new place (never read silently as the new key)."""
from __future__ import annotations

from genre_lib.config.base import ConfigError

# old dotted key -> new dotted key. The recommend section was split by role (genre, cf, privacy, execution).
MOVED: dict[str, str] = {
    "recommend.gamma": "recommend.genre.gamma",
    "recommend.genre_scorer": "recommend.genre.scorer",
    "recommend.mixture_passes": "recommend.genre.mixture_passes",
    "recommend.mixture_steps": "recommend.genre.mixture_steps",
    "recommend.cf_reg": "recommend.cf.reg",
    "recommend.cf_dropout": "recommend.cf.dropout",
    "recommend.cf_recency_half_life": "recommend.cf.recency_half_life",
    "recommend.cf_rating_power": "recommend.cf.rating_power",
    "recommend.cf_max_items": "recommend.cf.max_items",
    "recommend.cf_knn_neighbours": "recommend.cf.knn_neighbours",
    "recommend.pseudonymize_users": "recommend.privacy.pseudonymize_users",
    "recommend.pseudonym_key_env": "recommend.privacy.pseudonym_key_env",
    "recommend.engine": "recommend.execution.engine",
    "recommend.block_users": "recommend.execution.block_users",
    "recommend.user_block_rows": "recommend.execution.user_block_rows",
}


def moved_message(key: str) -> str:
    return f"{key} moved to {MOVED[key]}"


def check_key(key: str) -> None:
    """ConfigError when the dotted `key` is an old one."""
    if key in MOVED:
        raise ConfigError(moved_message(key))


def check_raw(raw: dict) -> None:
    """ConfigError naming every old key present in a raw profile mapping (as nested sections)."""
    found = []
    for old in MOVED:
        node, parts = raw, old.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node:  # present, even as null
            found.append(old)
    if found:
        raise ConfigError("; ".join(moved_message(k) for k in found))
