"""The Redis serving store: per-user keys per version, one pointer key (see genre_lib.serve.store)."""
from __future__ import annotations

import json
import time
from typing import Optional

import numpy as np
import pandas as pd

from genre_lib.serve.base import ROW_COLS, IdFor, Lookup, ServingStore, StoreUnavailable, VersionWriter, dumps, now


def _glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


class RedisStore(ServingStore):
    """Readers GET the pointer, then read the user's key in one MULTI with a check that the
    version's manifest still exists: prune deletes the manifest first, so a reader that raced a
    prune retries from the pointer instead of seeing a half-deleted version."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "genre", client=None,
                 timeout_s: float = 5.0):
        import redis

        self._errors = (redis.RedisError, ValueError, KeyError, TypeError)
        self.r = client or redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout_s,
                                                socket_connect_timeout=timeout_s)
        self.url = url
        self.prefix = prefix
        self.k_seq = f"{prefix}:version-seq"
        self.k_versions = f"{prefix}:versions"
        self.k_current = f"{prefix}:current"
        self._meta_cache: dict[str, dict] = {}  # committed manifests do not change what readers need

    def k_user(self, version, user_id: str) -> str:
        return f"{self.prefix}:v:{version}:u:{user_id}"

    def k_cold(self, version) -> str:
        return f"{self.prefix}:v:{version}:cold"

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except StoreUnavailable:
            raise
        except self._errors as e:
            raise StoreUnavailable(f"redis store {self.prefix}: {type(e).__name__}: {e}") from e

    # reading
    def _meta(self, version: str) -> Optional[dict]:
        meta = self._meta_cache.get(version)
        if meta is None:
            blob = self.r.hget(self.k_versions, version)
            if blob is None:
                return None
            meta = json.loads(blob)
            if len(self._meta_cache) > 64:
                self._meta_cache.clear()
            self._meta_cache[version] = meta
        return meta

    def current(self) -> Optional[dict]:
        def read():
            ver = self.r.get(self.k_current)
            blob = self.r.hget(self.k_versions, ver) if ver is not None else None
            return json.loads(blob) if blob else None
        return self._guard(read)

    def get(self, user_id: str, n: int, id_for: Optional[IdFor] = None) -> Optional[Lookup]:
        def read():
            for _ in range(5):
                ver = self.r.get(self.k_current)
                if ver is None:
                    return None
                meta = self._meta(ver)
                if meta is None:
                    continue  # pruned between the two reads: the pointer has moved on
                key = id_for(meta, user_id) if id_for else user_id
                for k in (self.k_user(ver, key), self.k_cold(ver)):
                    with self.r.pipeline(transaction=True) as p:
                        alive, blob = p.hexists(self.k_versions, ver).get(k).execute()
                    if not alive:
                        self._meta_cache.pop(ver, None)
                        break
                    if k.endswith(":cold"):
                        return Lookup(meta, json.loads(blob or "[]")[:n], False, None)
                    if blob is not None:
                        entry = json.loads(blob)
                        return Lookup(meta, entry["items"][:n], True, entry.get("variant"))
            raise StoreUnavailable("serving versions changed under five reads in a row")
        return self._guard(read)

    def versions(self, include_staging: bool = False) -> list[dict]:
        def read():
            metas = [json.loads(b) for b in self.r.hvals(self.k_versions)]
            metas = [m for m in metas if include_staging or m.get("state") == "committed"]
            return sorted(metas, key=lambda m: int(m["version"]))
        return self._guard(read)

    # writing
    def begin_version(self, meta: dict) -> VersionWriter:
        def create():
            version = int(self.r.incr(self.k_seq))
            full = {**meta, "ds": str(meta["ds"]), "run_id": str(meta["run_id"]), "version": version,
                    "state": "staging", "created_at": now(), "created_ts": time.time(), "store": "redis"}
            self.r.hset(self.k_versions, str(version), dumps(full))
            return _RedisWriter(self, version, full)
        return self._guard(create)

    def activate(self, version: int) -> dict:
        def tx(p):
            blob = p.hget(self.k_versions, str(version))
            meta = json.loads(blob) if blob else None
            if not meta or meta.get("state") != "committed":
                raise KeyError(f"no committed version {version}")
            p.multi()
            p.set(self.k_current, str(version))
            return meta
        return self._guard(lambda: self.r.transaction(tx, self.k_versions, value_from_callable=True))

    def annotate(self, version: int, **fields) -> None:
        def tx(p):
            blob = p.hget(self.k_versions, str(version))
            if blob is None:
                raise KeyError(f"no version {version}")
            p.multi()
            p.hset(self.k_versions, str(version), dumps({**json.loads(blob), **fields}))
        self._guard(lambda: self.r.transaction(tx, self.k_versions))

    def discard(self, version: int) -> bool:
        def tx(p):
            if p.get(self.k_current) == str(version):
                return False
            p.multi()
            p.hdel(self.k_versions, str(version))
            return True

        def run():
            if not self.r.transaction(tx, self.k_current, value_from_callable=True):
                return False
            # the manifest is gone, so no reader uses the version any more: now its keys
            batch = []
            match = f"{_glob_escape(self.prefix)}:v:{version}:*"
            for key in self.r.scan_iter(match=match, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    self.r.unlink(*batch)
                    batch = []
            if batch:
                self.r.unlink(*batch)
            return True
        self._meta_cache.pop(str(version), None)
        return self._guard(run)

    def close(self) -> None:
        self.r.close()


class _RedisWriter(VersionWriter):
    def __init__(self, store: RedisStore, version: int, meta: dict):
        super().__init__(version, meta)
        self.store = store
        self._seen: set[str] = set()  # users already written: a later frame merges into them

    def _write(self, frame: pd.DataFrame) -> None:
        st, r = self.store, self.store.r
        frame = frame.sort_values(["user_id", "rank"], kind="stable")
        users = frame["user_id"].to_numpy()
        cuts = np.flatnonzero(users[1:] != users[:-1]) + 1
        cols = [frame[c].tolist() for c in ROW_COLS]
        variants = frame["variant"].tolist()
        starts, ends = np.r_[0, cuts], np.r_[cuts, len(users)]

        def flush(p):
            try:
                p.execute()
            except st._errors as e:
                raise StoreUnavailable(f"redis store {st.prefix}: {e}") from e

        with r.pipeline(transaction=False) as p:
            for i, (a, b) in enumerate(zip(starts, ends)):
                user = users[a]
                items = [dict(zip(ROW_COLS, row)) for row in zip(*(c[a:b] for c in cols))]
                if user in self._seen:
                    old = json.loads(r.get(st.k_user(self.version, user)) or '{"items": []}')
                    ranks = {it["rank"] for it in items}
                    if ranks & {it["rank"] for it in old["items"]}:
                        raise ValueError(f"version {self.version}: duplicate (user_id, rank) rows for {user!r}")
                    items = sorted(old["items"] + items, key=lambda it: it["rank"])
                self._seen.add(user)
                p.set(st.k_user(self.version, user), dumps({"variant": variants[a], "items": items}))
                if i % 1000 == 999:
                    flush(p)
            flush(p)

    def _users(self) -> int:
        return len(self._seen)

    def _commit(self, meta: dict, cold: list[dict]) -> None:
        st = self.store

        def tx(p):
            blob = p.hget(st.k_versions, str(self.version))
            if blob is None or json.loads(blob).get("state") != "staging":
                raise RuntimeError(f"version {self.version} was discarded while it was written")
            p.multi()
            p.set(st.k_cold(self.version), dumps(cold))
            p.hset(st.k_versions, str(self.version), dumps(meta))
            p.set(st.k_current, str(self.version))
        st._guard(lambda: st.r.transaction(tx, st.k_versions))

    def _abort(self) -> None:
        self.store.discard(self.version)
