"""The embedded serving store: one SQLite file in WAL mode (see genre_lib.serve.store)."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from itertools import repeat
from pathlib import Path
from typing import Optional
from urllib.request import pathname2url

import pandas as pd

from genre_lib.serve.base import ROW_COLS, IdFor, Lookup, ServingStore, StoreUnavailable, VersionWriter, dumps, now

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
  version INTEGER PRIMARY KEY AUTOINCREMENT, ds TEXT NOT NULL, run_id TEXT NOT NULL,
  state TEXT NOT NULL, created_ts REAL NOT NULL, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recs (
  version INTEGER NOT NULL, user_id TEXT NOT NULL, rank INTEGER NOT NULL, item_id TEXT NOT NULL,
  title TEXT, score REAL, reason TEXT, variant TEXT,
  PRIMARY KEY (version, user_id, rank)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cold_start (
  version INTEGER NOT NULL, rank INTEGER NOT NULL, item_id TEXT NOT NULL, title TEXT, score REAL,
  reason TEXT, PRIMARY KEY (version, rank)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pointer (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
"""


class SqliteStore(ServingStore):
    """Readers use one read-only connection per thread, reopened whenever the file at the path is
    another one or was rewritten outside WAL (identity, size and mtime of the main file; WAL
    writes leave them alone, checkpoints change them), and dropped after any error: a missing,
    replaced or corrupt file is noticed on the next request (503) and never takes the server down."""

    def __init__(self, path: str | Path, timeout_s: float = 30.0, read_timeout_s: float = 2.0):
        self.path = str(path)
        self.timeout_s = timeout_s  # the publisher waits for another writer this long
        self.read_timeout_s = read_timeout_s  # a reader (WAL: hardly ever blocked) gives up: 503
        self._con: Optional[sqlite3.Connection] = None  # the publisher's read-write connection
        self._lock = threading.RLock()
        self._local = threading.local()

    # connections
    def _rw(self) -> sqlite3.Connection:
        if self._con is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None,
                                  check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses at most the last switch
            con.execute("PRAGMA journal_size_limit=67108864")  # a night's WAL shrinks back to 64 MiB
            con.executescript(_SQLITE_SCHEMA)
            self._con = con
        return self._con

    def _ro(self) -> sqlite3.Connection:
        try:
            st = os.stat(self.path)
        except OSError:
            self._drop_ro()
            raise StoreUnavailable(f"no serving store at {self.path}") from None
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        cached = getattr(self._local, "ro", None)
        if cached is not None and cached[0] == ident:
            return cached[1]
        self._drop_ro()
        try:
            con = sqlite3.connect(f"file:{pathname2url(self.path)}?mode=ro", uri=True,
                                  timeout=self.read_timeout_s, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"serving store {self.path}: {e}") from e
        self._local.ro = (ident, con)
        return con

    def _drop_ro(self) -> None:
        cached = getattr(self._local, "ro", None)
        if cached is not None:
            self._local.ro = None
            cached[1].close()

    def _read(self, fn):
        """fn(con) inside one read transaction: one snapshot of pointer and rows."""
        con = self._ro()
        try:
            con.execute("BEGIN")
            out = fn(con)
            con.execute("COMMIT")
            return out
        except (sqlite3.Error, ValueError, KeyError, TypeError) as e:
            self._drop_ro()
            raise StoreUnavailable(f"serving store {self.path}: {type(e).__name__}: {e}") from e
        except BaseException:
            self._drop_ro()  # e.g. id_for refused: never leave a read transaction open
            raise

    def _write_tx(self, fn):
        with self._lock:
            con = self._rw()
            con.execute("BEGIN IMMEDIATE")
            try:
                out = fn(con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return out

    # reading
    @staticmethod
    def _head(con) -> Optional[dict]:
        row = con.execute("SELECT v.meta FROM pointer p JOIN versions v ON v.version = p.version "
                          "WHERE p.id = 1").fetchone()
        return json.loads(row[0]) if row else None

    def current(self) -> Optional[dict]:
        return self._read(self._head)

    def get(self, user_id: str, n: int, id_for: Optional[IdFor] = None) -> Optional[Lookup]:
        def lookup(con):
            meta = self._head(con)
            if meta is None:
                return None
            key = id_for(meta, user_id) if id_for else user_id
            rows = con.execute("SELECT item_id, title, rank, score, reason, variant FROM recs "
                               "WHERE version = ? AND user_id = ? ORDER BY rank LIMIT ?",
                               (meta["version"], key, n)).fetchall()
            if rows:
                return Lookup(meta, [dict(zip(ROW_COLS, r)) for r in rows], True, rows[0][5])
            cold = con.execute("SELECT item_id, title, rank, score, reason FROM cold_start "
                               "WHERE version = ? ORDER BY rank LIMIT ?", (meta["version"], n)).fetchall()
            return Lookup(meta, [dict(zip(ROW_COLS, r)) for r in cold], False, None)
        return self._read(lookup)

    def initialised(self) -> bool:
        return os.path.isfile(self.path)

    def find(self, ds: str, run_id: str, include_staging: bool = False) -> Optional[dict]:
        self._rw()  # the publisher asks first: create the store on the first publish
        return super().find(ds, run_id, include_staging)

    def versions(self, include_staging: bool = False) -> list[dict]:
        where = "" if include_staging else "WHERE state = 'committed'"
        return self._read(lambda con: [json.loads(m) for (m,) in con.execute(
            f"SELECT meta FROM versions {where} ORDER BY version")])

    # writing
    def begin_version(self, meta: dict) -> VersionWriter:
        meta = {**meta, "ds": str(meta["ds"]), "run_id": str(meta["run_id"]), "state": "staging",
                "created_at": now(), "created_ts": time.time(), "store": "sqlite"}

        def insert(con):
            cur = con.execute("INSERT INTO versions (ds, run_id, state, created_ts, meta) VALUES (?, ?, ?, ?, ?)",
                              (meta["ds"], meta["run_id"], "staging", meta["created_ts"], "{}"))
            version = cur.lastrowid
            con.execute("UPDATE versions SET meta = ? WHERE version = ?",
                        (dumps({**meta, "version": version}), version))
            return version
        version = self._write_tx(insert)
        return _SqliteWriter(self, version, {**meta, "version": version})

    def activate(self, version: int) -> dict:
        def switch(con):
            row = con.execute("SELECT meta, state FROM versions WHERE version = ?", (version,)).fetchone()
            if row is None or row[1] != "committed":
                raise KeyError(f"no committed version {version}")
            con.execute("INSERT INTO pointer (id, version) VALUES (1, ?) "
                        "ON CONFLICT(id) DO UPDATE SET version = excluded.version", (version,))
            return json.loads(row[0])
        return self._write_tx(switch)

    def annotate(self, version: int, **fields) -> None:
        def update(con):
            row = con.execute("SELECT meta FROM versions WHERE version = ?", (version,)).fetchone()
            if row is None:
                raise KeyError(f"no version {version}")
            con.execute("UPDATE versions SET meta = ? WHERE version = ?",
                        (dumps({**json.loads(row[0]), **fields}), version))
        self._write_tx(update)

    def discard(self, version: int) -> bool:
        def delete(con):
            cur = con.execute("SELECT version FROM pointer WHERE id = 1").fetchone()
            if cur and cur[0] == version:
                return False
            con.execute("DELETE FROM recs WHERE version = ?", (version,))
            con.execute("DELETE FROM cold_start WHERE version = ?", (version,))
            return con.execute("DELETE FROM versions WHERE version = ?", (version,)).rowcount > 0
        return self._write_tx(delete)

    def close(self) -> None:
        self._drop_ro()
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


class _SqliteWriter(VersionWriter):
    def __init__(self, store: SqliteStore, version: int, meta: dict):
        super().__init__(version, meta)
        self.store = store

    def _write(self, frame: pd.DataFrame) -> None:
        cols = [frame[c].tolist() for c in ("user_id", "rank", "item_id", "title", "score", "reason", "variant")]
        rows = zip(repeat(self.version), *cols)
        try:
            self.store._write_tx(lambda con: con.executemany(
                "INSERT INTO recs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows))
        except sqlite3.IntegrityError as e:
            raise ValueError(f"version {self.version}: duplicate (user_id, rank) rows: {e}") from e

    def _users(self) -> int:
        con = self.store._rw()
        with self.store._lock:
            return con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT user_id FROM recs WHERE version = ?)",
                               (self.version,)).fetchone()[0]

    def _commit(self, meta: dict, cold: list[dict]) -> None:
        def switch(con):
            row = con.execute("SELECT state FROM versions WHERE version = ?", (self.version,)).fetchone()
            if row is None or row[0] != "staging":
                raise RuntimeError(f"version {self.version} was discarded while it was written")
            con.executemany("INSERT INTO cold_start VALUES (?, ?, ?, ?, ?, ?)",
                            [(self.version, c["rank"], c["item_id"], c["title"], c["score"], c["reason"])
                             for c in cold])
            con.execute("UPDATE versions SET state = 'committed', meta = ? WHERE version = ?",
                        (dumps(meta), self.version))
            con.execute("INSERT INTO pointer (id, version) VALUES (1, ?) "
                        "ON CONFLICT(id) DO UPDATE SET version = excluded.version", (self.version,))
        self.store._write_tx(switch)

    def _abort(self) -> None:
        self.store.discard(self.version)
