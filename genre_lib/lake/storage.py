"""Where the contract's tables live: Parquet at <lake.root>/<table>/ds=YYYY-MM-DD/, on a local disk
or an object store alike.

A partition commits by one small object written last, never by renaming folders (object stores have no
folder rename): each attempt writes its files under its own prefix `ds=D/_attempt-<utc>-<id>/`, then
the manifest `ds=D/_SUCCESS` (row count, schema version, run id, config hash, and the attempt and its
files) is written in one atomic step: a PUT on an object store, a file renamed over the old one on a
disk. Readers, pandas and Spark alike, read exactly the files the manifest names, so they see the old
partition or the new one, never a mix, never nothing. A superseded attempt is removed by `vacuum` once
GRACE_S has passed since the switch, so a reader that started before it can still finish.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import hashlib
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from genre_lib.lake.faults import fault_point as _fault_point
from genre_lib.lake.reads import note_read
from genre_lib.lake.tables import TABLES, schema

SUCCESS = "_SUCCESS"
ATTEMPT = "_attempt-"
# the manifest keys `commit` sets itself; a writer passes the rest (row_count, run_id, config_hash, ...)
COMMIT_KEYS = ("table", "ds", "schema_version", "committed_at", "attempt", "files")
# a superseded attempt stays this long after the switch, for readers that began before it
GRACE_S = float(os.environ.get("GENRE_LAKE_GRACE_S", "3600"))

log = logging.getLogger("genre.lake")


@functools.lru_cache(maxsize=16)
def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    if "://" in root:
        return pafs.FileSystem.from_uri(pyarrow_uri(root))
    return pafs.LocalFileSystem(), root


def pyarrow_uri(uri: str) -> str:
    """Hadoop's s3a:// (what Spark reads) as pyarrow's s3://: the one place the two schemes meet."""
    return "s3://" + uri[len("s3a://"):] if uri.startswith("s3a://") else uri


def spark_uri(uri: str) -> str:
    """pyarrow's s3:// as Hadoop's s3a:// (Spark's S3 connector, hadoop-aws)."""
    return "s3a://" + uri[len("s3://"):] if uri.startswith("s3://") else uri


def _utc(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc).timestamp()


@dataclass(frozen=True)
class Lake:
    """A lake root on any filesystem pyarrow knows (local path, file://, s3:// or s3a://, hdfs://)."""
    root: str

    @property
    def fs(self) -> pafs.FileSystem:
        return _filesystem(self.root)[0]

    def path(self, *parts: str) -> str:
        return "/".join([_filesystem(self.root)[1].rstrip("/"), *parts])

    def uri(self, *parts: str) -> str:
        """Path in the form Spark expects (the URI scheme kept, s3:// as s3a://)."""
        return "/".join([spark_uri(self.root).rstrip("/"), *parts])

    def partition(self, table: str, ds: dt.date | str) -> str:
        return self.path(table, f"ds={ds}")

    # --- reading -------------------------------------------------------------------------------
    def committed(self, table: str) -> list[str]:
        """Dates (YYYY-MM-DD) of the committed partitions of a table, sorted."""
        out = []
        for info in self.fs.get_file_info(pafs.FileSelector(self.path(table), allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("ds="):
                if self.fs.get_file_info(f"{info.path}/{SUCCESS}").type == pafs.FileType.File:
                    out.append(info.base_name[3:])
        return sorted(out)

    def latest(self, table: str, on_or_before: dt.date | str) -> Optional[str]:
        dates = [d for d in self.committed(table) if d <= str(on_or_before)]
        return dates[-1] if dates else None

    def _manifest_bytes(self, table: str, ds: dt.date | str) -> bytes:
        with self.fs.open_input_stream(f"{self.partition(table, ds)}/{SUCCESS}") as f:
            return f.read()

    def manifest(self, table: str, ds: dt.date | str) -> dict:
        return json.loads(self._manifest_bytes(table, ds))

    def require(self, table: str, ds: dt.date | str) -> str:
        """The partition's path, when committed: one look at its manifest, not a listing of the table."""
        if self.fs.get_file_info(f"{self.partition(table, ds)}/{SUCCESS}").type != pafs.FileType.File:
            raise FileNotFoundError(f"table {table} has no committed partition ds={ds} under {self.root}")
        return self.partition(table, ds)

    def files(self, table: str, ds: dt.date | str, manifest: Optional[dict] = None) -> list[str]:
        """The files of a committed partition: those its manifest names; for a partition committed
        before manifests named their files, the data files of its folder."""
        man = self.manifest(table, ds) if manifest is None else manifest
        part = self.partition(table, ds)
        if "files" in man:
            return [f"{part}/{man['attempt']}/{name}" for name in man["files"]]
        return sorted(i.path for i in self.fs.get_file_info(pafs.FileSelector(part))
                      if i.type == pafs.FileType.File and not i.base_name.startswith(("_", ".")))

    def read_json(self, table: str, ds: dt.date | str, name: str) -> dict:
        """A committed JSON document (metrics.json of evaluation, decision.json of publish_log)."""
        self.require(table, ds)
        raw = self._manifest_bytes(table, ds)
        found = [f for f in self.files(table, ds, json.loads(raw)) if f.rsplit("/", 1)[-1] == name]
        if not found:
            raise FileNotFoundError(f"{table} ds={ds} has no {name} under {self.root}")
        self._record_read(table, ds, raw)
        with self.fs.open_input_stream(found[0]) as f:
            return json.loads(f.read())

    def read_pandas(self, table: str, ds: dt.date | str, columns: Optional[list[str]] = None,
                    users: Optional[Iterable[str]] = None) -> pd.DataFrame:
        """A committed partition; only the rows of `users` (by user_id) when given."""
        data = self._dataset(table, ds)
        where = None if users is None else pc.field("user_id").isin(pa.array(list(users), pa.string()))
        return data.to_table(columns=columns, filter=where).to_pandas()

    def read_batches(self, table: str, ds: dt.date | str, batch_rows: int = 1 << 20) -> Iterator[pa.RecordBatch]:
        """A committed partition as record batches: memory for one batch, not the partition."""
        return self._dataset(table, ds).to_batches(batch_size=batch_rows)

    def _dataset(self, table: str, ds: dt.date | str) -> pads.Dataset:
        self.require(table, ds)
        raw = self._manifest_bytes(table, ds)  # read once: the files and the recorded commit agree
        self._record_read(table, ds, raw)
        return pads.dataset(self.files(table, ds, json.loads(raw)), filesystem=self.fs, format="parquet",
                            schema=schema(table), exclude_invalid_files=False)

    def spark_paths(self, table: str, dates: Iterable[str]) -> list[str]:
        """The committed files of these partitions as URIs for spark.read.parquet."""
        out = []
        for d in dates:
            raw = self._manifest_bytes(table, d)
            self._record_read(table, d, raw)
            out += [self._spark_uri(f) for f in self.files(table, d, json.loads(raw))]
        return out

    def _record_read(self, table: str, ds: dt.date | str, raw: bytes) -> None:
        note_read(table, str(ds), self.root, self.uri(table, f"ds={ds}"), raw)

    # --- writing -------------------------------------------------------------------------------
    def staging(self, table: str, ds: dt.date | str) -> str:
        """A fresh attempt folder for one partition; pass it to `commit` once it is full."""
        self.vacuum(table, ds)
        path = f"{self.partition(table, ds)}/{ATTEMPT}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
        self.fs.create_dir(path, recursive=True)
        return path

    def commit(self, table: str, ds: dt.date | str, staged: str, manifest: dict) -> dict:
        """Commit the attempt `staged`: its data files named in the partition's manifest, written last."""
        files = self._data_files(staged)
        if not files and TABLES[table].schema is not None:  # an empty partition still gets its (empty) file
            self.write_empty(table, staged)
            files = self._data_files(staged)
        manifest = {"table": table, "ds": str(ds), "schema_version": TABLES[table].version,
                    "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **manifest,
                    "attempt": staged.rstrip("/").rsplit("/", 1)[-1], "files": files}
        for key in ("row_count", "run_id", "config_hash"):
            if key not in manifest:
                raise ValueError(f"manifest for {table} lacks {key}")
        _fault_point("before_manifest")
        self._put_atomic(f"{self.partition(table, ds)}/{SUCCESS}",
                         json.dumps(manifest, indent=1, sort_keys=True, default=str).encode())
        _fault_point("after_manifest")
        self.vacuum(table, ds)
        return manifest

    def _data_files(self, folder: str) -> list[str]:
        """Names of the data files an attempt wrote (Spark's own markers and checksums left out)."""
        infos = self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File
                      and not i.base_name.startswith(("_", ".")) and not i.base_name.endswith(".crc"))

    def _put_atomic(self, path: str, data: bytes) -> None:
        """Write a small object in one step: an object store's PUT is atomic; elsewhere a temp file is
        renamed over the old one (a file rename, which every filesystem does atomically)."""
        if type(self.fs).__name__ in ("S3FileSystem", "GcsFileSystem", "AzureFileSystem"):
            with self.fs.open_output_stream(path) as f:
                f.write(data)
            return
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        _fault_point("manifest_staged")
        self.fs.move(tmp, path)

    def write_pandas(self, table: str, ds: dt.date | str, df: pd.DataFrame, manifest: dict) -> dict:
        """Validate the frame against the table schema, write it as one partition, commit."""
        return self.write_pandas_parts(table, ds, [df], lambda: manifest)

    def write_pandas_parts(self, table: str, ds: dt.date | str, frames: Iterable[pd.DataFrame],
                           manifest: Callable[[], dict]) -> dict:
        """`write_pandas` for a partition produced a part at a time (one file each, memory for one):
        nothing is visible until the last part is written and `manifest()` (called then) committed."""
        contract = schema(table)
        staged, rows, n = self.staging(table, ds), 0, 0
        for df in frames:
            missing = [c for c in contract.names if c not in df.columns]
            if missing:
                raise ValueError(f"{table}: frame lacks columns {missing}")
            arrow = pa.Table.from_pandas(df[contract.names], schema=contract, preserve_index=False)
            if arrow.num_rows or not n:  # an empty partition still gets its (empty) file
                pq.write_table(arrow, f"{staged}/part-{n:05d}.parquet", filesystem=self.fs)
                n, rows = n + 1, rows + arrow.num_rows
        if not n:
            self.write_empty(table, staged)
        return self.commit(table, ds, staged, {"row_count": rows, **manifest()})

    def write_spark(self, table: str, ds: dt.date | str, sdf, manifest: dict) -> dict:
        """Write a Spark DataFrame (columns cast to the contract) as one partition, commit."""
        staged = self.staging(table, ds)
        self.spark_write(table, sdf, staged)
        return self.commit(table, ds, staged, {"row_count": self.count_rows(staged), **manifest})

    def spark_write(self, table: str, sdf, staged: str, partition_by: Optional[str] = None, mode: str = "overwrite") -> None:
        from genre_lib.lake.spark import to_contract

        writer = to_contract(sdf, table, keep=(partition_by,) if partition_by else ()).write.mode(mode)
        if partition_by:
            writer = writer.partitionBy(partition_by)
        writer.parquet(self._spark_uri(staged))

    def write_empty(self, table: str, folder: str) -> None:
        pq.write_table(schema(table).empty_table(), f"{folder}/part-00000.parquet", filesystem=self.fs)

    def count_rows(self, path: str) -> int:
        """Rows of a staged Parquet folder, read from the file footers only."""
        return pads.dataset(path, filesystem=self.fs, format="parquet").count_rows()

    def _spark_uri(self, path: str) -> str:
        if "://" in self.root:
            return spark_uri(f"{self.root.split('://', 1)[0]}://{path}")
        return path

    def write_json(self, table: str, ds: dt.date | str, name: str, payload: dict, manifest: dict) -> dict:
        staged = self.staging(table, ds)
        with self.fs.open_output_stream(f"{staged}/{name}") as f:
            f.write(json.dumps(payload, indent=1, sort_keys=True, default=str).encode())
        return self.commit(table, ds, staged, {"row_count": len(payload.get("models", payload)), **manifest})

    def scratch(self, stage: str, ds: dt.date | str) -> tuple[str, ...]:
        """Path parts of a fresh scratch folder of one stage run, `_artifacts/<stage>/ds=<D>/<uuid>`
        (for `path`/`uri`; `remove_scratch` deletes it)."""
        return ("_artifacts", stage, f"ds={ds}", uuid.uuid4().hex)

    def remove_scratch(self, parts: tuple[str, ...]) -> None:
        """Delete a scratch entry (a run's folder or file), then the folders above it that it left empty."""
        kind = self.fs.get_file_info(self.path(*parts)).type
        if kind == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(*parts))
        elif kind == pafs.FileType.File:
            self.fs.delete_file(self.path(*parts))
        self.remove_empty(parts[:-1])

    def remove_empty(self, parts: tuple[str, ...]) -> None:
        """The folder `parts` and each one above it, as long as it is empty (ds=<D>, <stage>, _artifacts)."""
        if isinstance(self.fs, pafs.LocalFileSystem):  # object stores keep no empty folders
            for n in range(len(parts), 0, -1):
                try:  # rmdir, not delete_dir: a concurrent run's fresh folder inside is left alone
                    os.rmdir(self.path(*parts[:n]))
                except OSError:
                    break

    def vacuum(self, table: str, ds: Optional[dt.date | str] = None, grace_s: float = GRACE_S,
               dry_run: bool = False) -> list[str]:
        """Remove what no reader can need any more, in one partition (`ds`) or all: attempts the
        manifest does not name, once `grace_s` has passed since they were superseded (since they began,
        for one that never committed), a crashed writer's temp manifest, and files beside the attempts
        of a partition committed before manifests named their files. Returns what it removed (with
        `dry_run`, what it would remove)."""
        now = time.time()
        removed = []
        parts = [self.partition(table, ds)] if ds is not None else [
            i.path for i in self.fs.get_file_info(pafs.FileSelector(self.path(table), allow_not_found=True))
            if i.type == pafs.FileType.Directory and i.base_name.startswith("ds=")]
        for part in parts:
            infos = self.fs.get_file_info(pafs.FileSelector(part, allow_not_found=True))
            man = None
            if any(i.base_name == SUCCESS for i in infos):
                with self.fs.open_input_stream(f"{part}/{SUCCESS}") as f:
                    man = json.loads(f.read())
            current = (man or {}).get("attempt")
            switched = dt.datetime.strptime(man["committed_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.timezone.utc).timestamp() if man else 0.0
            for i in infos:
                name = i.base_name
                if name.startswith(ATTEMPT) and name != current:
                    begun = _utc(name[len(ATTEMPT):].split("-", 1)[0])
                    gone = now - max(begun, switched) > grace_s  # superseded at the switch, or never committed
                elif name.startswith(f"{SUCCESS}.tmp-") or (current and i.type == pafs.FileType.File
                                                            and not name.startswith(("_", "."))):
                    gone = i.mtime is not None and now - max(i.mtime.timestamp(), switched) > grace_s
                else:
                    continue
                if gone:
                    removed.append(i.path)
                    if not dry_run:
                        _fault_point("mid_vacuum")
                        self.fs.delete_dir(i.path) if i.type == pafs.FileType.Directory else self.fs.delete_file(i.path)
                        log.info("lake: removed %s (not in the manifest of %s, grace %.0f s passed)", i.path, part, grace_s)
        return removed

    def adopt(self, table: str, ds: dt.date | str, folder: str) -> str:
        """A fresh attempt of (table, ds) holding the data files of `folder`, moved file by file (an
        object store copies each on the server; no folder is renamed): how a writer that wrote several
        partitions in one go (Spark's partitionBy) commits each."""
        attempt = self.staging(table, ds)
        for name in self._data_files(folder):
            self.fs.move(f"{folder}/{name}", f"{attempt}/{name}")
        return attempt
