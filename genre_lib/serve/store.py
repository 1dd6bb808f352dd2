"""The serving store: published nights as immutable versions, and one pointer to the served one.

A publish writes a whole night beside the one being served, then switches the pointer in one
transaction. A reader reads the pointer and the user's rows as one snapshot, so it gets the old
night or the new one, never a mix of both and never a half-written version. Old versions are
pruned after the switch; the current one never is.

One small interface, two implementations:
- `SqliteStore(path)`: the embedded default, one file (publish.sqlite_path). WAL mode, so readers
  (read-only connections) never wait for the writer; `versions`, `recs` (version, user_id, rank),
  `cold_start` and a one-row `pointer` table.
- `RedisStore(url, prefix)`: `<p>:v:<version>:u:<user>` holds a user's list as JSON,
  `<p>:v:<version>:cold` the version's cold-start list, the hash `<p>:versions` the manifests and
  `<p>:current` the pointer, switched with MULTI/EXEC.

Every version carries a cold-start list: the items recommended to the most users that night
(reason "popular"), served to users the night does not know.
"""
from __future__ import annotations

from genre_lib.serve.base import COLD_START_SIZE, Lookup, ServingStore, StoreUnavailable, VersionWriter
from genre_lib.serve.redis_store import RedisStore
from genre_lib.serve.sqlite_store import SqliteStore

__all__ = ["COLD_START_SIZE", "Lookup", "RedisStore", "ServingStore", "SqliteStore", "StoreUnavailable",
           "VersionWriter", "store_for"]


def store_for(cfg) -> ServingStore:
    """The store of a pipeline config's `publish` section."""
    from genre_lib.config.settings import resolve_path

    pc = cfg.publish
    if pc.store == "redis":
        return RedisStore(pc.redis_url, pc.redis_prefix)
    return SqliteStore(resolve_path(pc.sqlite_path))
