"""The committed partitions a stage read, noted while `recording_reads` is active: what its MLflow
child run logs as input datasets (orchestration/tracking.py)."""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Iterator, Optional


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


def note_read(table: str, ds: str, lake_root: str, uri: str, manifest_raw: bytes) -> None:
    """Note a committed partition this process reads (its manifest as read), once per (table, ds, lake)."""
    if _reads is None or any(r.table == table and r.ds == ds and r.lake == lake_root for r in _reads):
        return
    man = json.loads(manifest_raw)
    _reads.append(PartitionRead(table, ds, lake_root, uri, hashlib.sha256(manifest_raw).hexdigest(),
                                int(man.get("row_count", -1)), str(man.get("run_id", ""))))
