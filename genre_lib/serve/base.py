"""The serving store's interface and what both implementations share (see genre_lib.serve.store)."""
from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections import Counter
from typing import Callable, NamedTuple, Optional

import pandas as pd

COLD_START_SIZE = 100  # the API's largest n
STALE_STAGING_S = 3600  # an unfinished version older than this belongs to a crashed publish
REQUIRED = ("user_id", "rank", "item_id", "score", "reason")
ROW_COLS = ("item_id", "title", "rank", "score", "reason")  # one served row

IdFor = Callable[[dict, str], str]  # (version meta, user id as asked) -> user id as stored


class StoreUnavailable(RuntimeError):
    """The store is missing, corrupt or unreachable; the API answers 503 and keeps running."""


class Lookup(NamedTuple):
    meta: dict  # the version's manifest
    rows: list[dict]  # item_id, title, rank, score, reason; in rank order
    personalised: bool  # False: the user is not in this version, rows are its cold-start list
    variant: Optional[str]


class VersionWriter(ABC):
    """Fills one new version; nothing of it is visible to readers before `commit`."""

    def __init__(self, version: int, meta: dict):
        self.version = version
        self.meta = meta
        self.rows = 0
        self._counts: Counter = Counter()
        self._titles: dict[str, Optional[str]] = {}
        self._done = False

    def add_rows(self, frame: pd.DataFrame) -> None:
        """Rows with user_id, rank, item_id, score, reason and optionally title and variant. One
        user's rows may come in several frames; (user_id, rank) must be unique."""
        frame = normalise(frame)
        if frame.empty:
            return
        self._write(frame)
        self.rows += len(frame)
        self._counts.update(frame["item_id"].value_counts().to_dict())
        firsts = frame.drop_duplicates("item_id")
        self._titles.update(zip(firsts["item_id"], firsts["title"]))

    def commit(self) -> dict:
        """Switch the version in (atomically) and return its final manifest."""
        if self.rows == 0:
            raise ValueError(f"version {self.version}: no rows; an empty night is never switched in")
        users = self._users()
        top = sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0]))[:COLD_START_SIZE]
        cold = [{"item_id": item, "title": self._titles.get(item), "rank": i + 1,
                 "score": count / max(users, 1), "reason": "popular"} for i, (item, count) in enumerate(top)]
        meta = {**self.meta, "version": self.version, "state": "committed", "rows": self.rows,
                "users": users, "cold_start": len(cold), "committed_at": now()}
        self._commit(meta, cold)
        self._done = True
        self.meta = meta
        return meta

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._abort()

    def __enter__(self) -> "VersionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    @abstractmethod
    def _write(self, frame: pd.DataFrame) -> None: ...

    @abstractmethod
    def _users(self) -> int: ...

    @abstractmethod
    def _commit(self, meta: dict, cold: list[dict]) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...


class ServingStore(ABC):
    @abstractmethod
    def begin_version(self, meta: dict) -> VersionWriter:
        """A writer for a new version; `meta` needs ds and run_id and may carry anything JSON."""

    @abstractmethod
    def current(self) -> Optional[dict]:
        """The manifest of the version being served, None before the first publish."""

    @abstractmethod
    def get(self, user_id: str, n: int, id_for: Optional[IdFor] = None) -> Optional[Lookup]:
        """The user's first n rows of the current version, or its cold-start list for an unknown
        user, read as one snapshot; None when no version is current. `id_for` maps the asked id to
        the stored one with the version's manifest in hand (pseudonymised nights)."""

    @abstractmethod
    def versions(self, include_staging: bool = False) -> list[dict]:
        """Manifests of the stored versions, oldest first."""

    @abstractmethod
    def activate(self, version: int) -> dict:
        """Point readers at an existing committed version (a rollback)."""

    @abstractmethod
    def annotate(self, version: int, **fields) -> None:
        """Add fields to a version's manifest (e.g. event_sent)."""

    @abstractmethod
    def discard(self, version: int) -> bool:
        """Delete a version that is not the current one; False when it is current or unknown."""

    def initialised(self) -> bool:
        """False only for a store that was never written (nothing published yet)."""
        return True

    def find(self, ds: str, run_id: str, include_staging: bool = False) -> Optional[dict]:
        """The newest version published from this night's run, if any."""
        hits = [m for m in self.versions(include_staging=include_staging)
                if m.get("ds") == str(ds) and m.get("run_id") == run_id]
        return hits[-1] if hits else None

    def prune(self, keep: int) -> list[int]:
        """Drop committed versions beyond the newest `keep` (never the current one) and staging
        versions left by crashed publishes; the dropped version ids."""
        if keep < 1:
            raise ValueError("keep must be >= 1")
        current = self.current()
        cur = current["version"] if current else None
        metas = self.versions(include_staging=True)
        committed = [m["version"] for m in metas if m.get("state") == "committed"][::-1]
        now = time.time()
        stale = [m["version"] for m in metas if m.get("state") != "committed"
                 and now - float(m.get("created_ts", 0)) > STALE_STAGING_S]
        dropped = []
        for v in sorted([v for v in committed[keep:] if v != cur] + stale):  # oldest first
            if self.discard(v):
                dropped.append(v)
        return dropped

    def close(self) -> None:
        pass


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"serving rows lack columns {missing}")
    if frame["user_id"].isna().any() or frame["item_id"].isna().any() or frame["rank"].isna().any():
        raise ValueError("serving rows with a null user_id, item_id or rank")
    out = pd.DataFrame({
        "user_id": frame["user_id"].astype(str), "rank": frame["rank"].astype("int64"),
        "item_id": frame["item_id"].astype(str),
        "title": frame["title"] if "title" in frame.columns else None,
        "score": frame["score"].astype("float64"), "reason": frame["reason"],
        "variant": frame["variant"] if "variant" in frame.columns else None,
    })
    for c in ("title", "score", "reason", "variant"):  # JSON has no NaN: a missing value is null
        col = out[c].astype(object)
        out[c] = col.where(col.notna(), None)
    return out


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str, allow_nan=False)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
