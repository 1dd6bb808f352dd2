"""Where the contract's tables live: Parquet at <lake.root>/<table>/ds=YYYY-MM-DD/.

A partition becomes visible only when complete: writers fill `_tmp-ds=D-<token>/`, write the
`_SUCCESS` manifest into it, then swap it in by rename. Readers list only `ds=` folders that carry
`_SUCCESS`, so a crashed writer leaves at worst an ignored temp folder, never a half table.
"""
from __future__ import annotations

import contextlib
import datetime as dt
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

from genre_lib.lake.tables import TABLES, schema

SUCCESS = "_SUCCESS"


def _fault_point(name: str) -> None:
    """Fault injection for the reliability suite: GENRE_FAULT_AT=<name> makes this process die by
    SIGKILL here, at the most delicate moments of a commit, which random kill times rarely hit."""
    if os.environ.get("GENRE_FAULT_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class PartitionRead:
    """A committed partition a stage read: what its MLflow child run logs as an input dataset."""
    table: str
    ds: str
    lake: str               # the lake root it was read from
    path: str               # the partition's URI
    manifest_sha256: str    # of the _SUCCESS manifest as read: names the exact commit
    rows: int
    producer_run_id: str


_reads: Optional[list[PartitionRead]] = None


@contextlib.contextmanager
def recording_reads() -> Iterator[list[PartitionRead]]:
    """While active, every `Lake.read_pandas` and `Lake.spark_paths` in this process notes the
    partitions it reads (each once) in the yielded list."""
    global _reads
    outer, _reads = _reads, []
    try:
        yield _reads
    finally:
        _reads = outer


@dataclass(frozen=True)
class Lake:
    """A lake root on any filesystem pyarrow knows (local path, file://, s3://, hdfs://)."""
    root: str

    @property
    def _fs(self) -> tuple[pafs.FileSystem, str]:
        if "://" in self.root:
            return pafs.FileSystem.from_uri(self.root)
        return pafs.LocalFileSystem(), self.root

    @property
    def fs(self) -> pafs.FileSystem:
        return self._fs[0]

    def path(self, *parts: str) -> str:
        return "/".join([self._fs[1].rstrip("/"), *parts])

    def uri(self, *parts: str) -> str:
        """Path in the form Spark expects (the URI scheme kept)."""
        return "/".join([self.root.rstrip("/"), *parts])

    def partition(self, table: str, ds: dt.date | str) -> str:
        return self.path(table, f"ds={ds}")

    # --- reading -------------------------------------------------------------------------------
    def committed(self, table: str) -> list[str]:
        """Dates (YYYY-MM-DD) of the committed partitions of a table, sorted."""
        sel = pafs.FileSelector(self.path(table), allow_not_found=True)
        infos = self.fs.get_file_info(sel)
        if self._recover(table, infos):
            infos = self.fs.get_file_info(sel)
        out = []
        for info in infos:
            name = info.base_name
            if info.type == pafs.FileType.Directory and name.startswith("ds="):
                if self.fs.get_file_info(f"{info.path}/{SUCCESS}").type == pafs.FileType.File:
                    out.append(name[3:])
        return sorted(out)

    def _recover(self, table: str, infos: list) -> bool:
        """Undo a commit that died between moving the old partition aside and moving the new one
        in: the old one goes back, so readers keep last night's data until a rerun replaces it."""
        names = {i.base_name for i in infos}
        restored = False
        for info in infos:
            if info.base_name.startswith("_old-ds="):
                ds = info.base_name[len("_old-ds="):][:10]
                if f"ds={ds}" not in names:
                    self.fs.move(info.path, self.partition(table, ds))
                    names.add(f"ds={ds}")
                    restored = True
        return restored

    def latest(self, table: str, on_or_before: dt.date | str) -> Optional[str]:
        dates = [d for d in self.committed(table) if d <= str(on_or_before)]
        return dates[-1] if dates else None

    def manifest(self, table: str, ds: dt.date | str) -> dict:
        with self.fs.open_input_stream(f"{self.partition(table, ds)}/{SUCCESS}") as f:
            return json.loads(f.read())

    def require(self, table: str, ds: dt.date | str) -> str:
        if str(ds) not in self.committed(table):
            raise FileNotFoundError(f"table {table} has no committed partition ds={ds} under {self.root}")
        return self.partition(table, ds)

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
        path = self.require(table, ds)
        self._record_read(table, ds)
        return pads.dataset(path, filesystem=self.fs, format="parquet", schema=schema(table), exclude_invalid_files=False)

    def spark_paths(self, table: str, dates: Iterable[str]) -> list[str]:
        dates = list(dates)
        for d in dates:
            self._record_read(table, d)
        return [self.uri(table, f"ds={d}") for d in dates]

    def _record_read(self, table: str, ds: dt.date | str) -> None:
        """Note a committed partition this process reads, while `recording_reads` is active."""
        if _reads is None or any(r.table == table and r.ds == str(ds) and r.lake == self.root for r in _reads):
            return
        with self.fs.open_input_stream(f"{self.partition(table, ds)}/{SUCCESS}") as f:
            raw = f.read()
        man = json.loads(raw)
        _reads.append(PartitionRead(table, str(ds), self.root, self.uri(table, f"ds={ds}"),
                                    hashlib.sha256(raw).hexdigest(), int(man.get("row_count", -1)),
                                    str(man.get("run_id", ""))))

    # --- writing -------------------------------------------------------------------------------
    def staging(self, table: str, ds: dt.date | str) -> str:
        """A fresh temp folder for one partition; pass it to `commit` once it is full."""
        self.clean_stale(table)
        path = self.path(table, f"_tmp-ds={ds}-{uuid.uuid4().hex[:12]}")
        self.fs.create_dir(path, recursive=True)
        return path

    def commit(self, table: str, ds: dt.date | str, staged: str, manifest: dict) -> dict:
        """Write the manifest into the staged folder, then swap it in as the partition."""
        manifest = {"table": table, "ds": str(ds), "schema_version": TABLES[table].version,
                    "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **manifest}
        for key in ("row_count", "run_id", "config_hash"):
            if key not in manifest:
                raise ValueError(f"manifest for {table} lacks {key}")
        with self.fs.open_output_stream(f"{staged}/{SUCCESS}") as f:
            f.write(json.dumps(manifest, indent=1, sort_keys=True, default=str).encode())
        final = self.partition(table, ds)
        olds = []
        _fault_point("before_swap")
        for attempt in range(3):
            if self.fs.get_file_info(final).type != pafs.FileType.NotFound:
                olds.append(self.path(table, f"_old-ds={ds}-{uuid.uuid4().hex[:12]}"))
                self.fs.move(final, olds[-1])
                _fault_point("between_moves")
            try:
                self.fs.move(staged, final)
                break
            except OSError:
                # a reader's _recover put the old partition back between our two moves: again
                if attempt == 2:
                    raise
        for old in olds:
            if self.fs.get_file_info(old).type != pafs.FileType.NotFound:
                self.fs.delete_dir(old)
        return manifest

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
            scheme = self.root.split("://", 1)[0]
            return f"{scheme}://{path}"
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
        if self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound:
            self.fs.delete_dir(self.path(*parts))
        if isinstance(self.fs, pafs.LocalFileSystem):  # object stores keep no empty folders
            for n in range(len(parts) - 1, 0, -1):  # ds=<D>, <stage>, _artifacts: each only if empty
                try:  # rmdir, not delete_dir: a concurrent run's fresh folder inside is left alone
                    os.rmdir(self.path(*parts[:n]))
                except OSError:
                    break

    def clean_stale(self, table: str, older_than_s: float = 3600) -> int:
        """Remove temp folders left by crashed writers (older than an hour, so not a live one)."""
        sel = pafs.FileSelector(self.path(table), allow_not_found=True)
        n = 0
        for info in self.fs.get_file_info(sel):
            if info.base_name.startswith(("_tmp-", "_old-")) and info.mtime is not None:
                if time.time() - info.mtime.timestamp() > older_than_s:
                    self.fs.delete_dir(info.path)
                    n += 1
        return n


_ARROW_TO_SPARK = {
    pa.string(): "string", pa.float64(): "double", pa.float32(): "float", pa.int32(): "int",
    pa.int64(): "bigint", pa.timestamp("us", tz="UTC"): "timestamp",
    pa.list_(pa.string()): "array<string>", pa.list_(pa.float32()): "array<float>",
}


def to_contract(sdf, table: str, keep: tuple[str, ...] = ()):
    """Select and cast a Spark frame's columns to the table's schema, in contract order."""
    from pyspark.sql import functions as F

    contract = schema(table)
    missing = [f.name for f in contract if f.name not in sdf.columns]
    if missing:
        raise ValueError(f"{table}: frame lacks columns {missing}")
    return sdf.select(*[F.col(f.name).cast(_ARROW_TO_SPARK[f.type]).alias(f.name) for f in contract], *keep)
