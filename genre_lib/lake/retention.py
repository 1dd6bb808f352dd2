"""Retention: what the contract's `keep_nights` (genre_lib/lake/tables.py) lets go, removed through the
lake's own protocol.

`plan` lists what expired and why; `apply` removes it. A table keeps its newest `keep_nights` committed
partitions on or before `today`: nights are counted, not calendar days, so a night that is missing
never shortens what is kept. Never removed: the newest committed partition of a table, any partition
after `today`, and the (table, ds) pairs in `protect` (the night the serving store serves and the night
being written: the caller knows them). A partition goes as it came, manifest first: deleting
`_SUCCESS` is one atomic step after which no reader lists or reads it, then its folder goes, then
`Lake.vacuum` removes superseded attempts in every table. Scratch space under `_artifacts/<stage>/
ds=<D>/` goes too: a run's folder untouched for a day (every stage's timeout is far shorter) and night
folders left empty. A stage whose scratch lives elsewhere (`lake.scratch_root`) is tidied by a plan
over that root too (it holds no tables, so only its scratch is planned).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass
from typing import Iterable, Optional

import pyarrow.fs as pafs

from genre_lib.lake import storage
from genre_lib.lake.faults import fault_point
from genre_lib.lake.storage import SUCCESS, Lake
from genre_lib.lake.tables import TABLES

SCRATCH = "_artifacts"
SCRATCH_AGE_S = 24 * 3600  # a run's scratch untouched this long belongs to no live run

log = logging.getLogger("genre.lake")


@dataclass(frozen=True)
class Removal:
    """One thing retention removes: a partition of `table` (`kind` partition, or uncommitted for a
    night folder no manifest commits), or scratch space (`table` is `_artifacts/<stage>`; `kind`
    scratch for a run's folder or file, empty for a night folder with nothing in it)."""
    table: str
    ds: str
    reason: str
    path: str
    kind: str = "partition"
    attempt: Optional[str] = None  # the attempt the manifest named when planned: a newer commit is kept


def plan(lake: Lake, today: dt.date | str, protect: Iterable[tuple[str, dt.date | str]] = (),
         now: Optional[float] = None, history_days: Optional[int] = None,
         keep_nights: Optional[dict[str, int]] = None) -> list[Removal]:
    """What retention would remove from `lake` on night `today` (nothing is touched). `history_days`:
    the profile's window (genres.lookback_days), what a history table keeps; None keeps all of it.
    `keep_nights`: per table, nights kept instead of the contract's (maintenance.keep_nights)."""
    today, now = str(today), time.time() if now is None else now
    keep = {(t, str(d)) for t, d in protect}
    start = str(dt.date.fromisoformat(today) - dt.timedelta(days=history_days - 1)) if history_days else None
    out: list[Removal] = []
    for table in TABLES.values():
        n = (keep_nights or {}).get(table.name, table.keep_nights)
        if (n is None and not table.history) or (table.history and start is None):
            continue
        nights = lake.committed(table.name)
        window = [d for d in nights if d <= today]
        if table.history:
            kept, expired = [d for d in window if d >= start], [d for d in window if d < start]
            why = f"before the history window of {history_days} days ({start} .. {today})"
        else:
            kept, expired = window[-n:], window[:-n]
            why = f"older than the newest {n} committed nights ({kept[0]} .. {kept[-1]} kept)" if kept else ""
        for d in expired:
            if (table.name, d) in keep or d == nights[-1]:
                continue
            out.append(Removal(table.name, d, why, lake.partition(table.name, d), "partition",
                               lake.manifest(table.name, d).get("attempt")))
        if kept:  # night folders no manifest commits (a writer that died, a removal cut short)
            for info in _dirs(lake, lake.path(table.name)):
                d = info.base_name[len("ds="):]
                if (info.base_name.startswith("ds=") and d < kept[0] and d not in nights
                        and (table.name, d) not in keep and _idle(lake, info, now) > storage.GRACE_S):
                    out.append(Removal(table.name, d, "uncommitted (no manifest) and older than what is kept",
                                       info.path, "uncommitted"))
    return out + _scratch(lake, now)


def _scratch(lake: Lake, now: float) -> list[Removal]:
    out = []
    for stage in _dirs(lake, lake.path(SCRATCH)):
        for night in _dirs(lake, stage.path):
            where, ds = f"{SCRATCH}/{stage.base_name}", night.base_name[len("ds="):]
            runs = lake.fs.get_file_info(pafs.FileSelector(night.path))
            if not runs and _idle(lake, night, now) > storage.GRACE_S:
                out.append(Removal(where, ds, "empty scratch folder", night.path, "empty"))
            for run in runs:
                idle = _idle(lake, run, now)
                if idle > SCRATCH_AGE_S:
                    out.append(Removal(where, ds, f"scratch untouched for {idle / 3600:.0f} h (more than "
                                       f"{SCRATCH_AGE_S / 3600:.0f} h: no live run)", run.path, "scratch"))
    return out


def apply(lake: Lake, removals: Iterable[Removal], dry_run: bool = False) -> list[Removal]:
    """Remove what `plan` listed, each logged with its reason, then vacuum every table; returns what
    was removed (with `dry_run`, what would be, and nothing is touched)."""
    done = []
    for r in removals:
        if dry_run:
            log.info("retention (dry run): would remove %s ds=%s: %s (%s)", r.table, r.ds, r.reason, r.path)
        elif not (_remove_partition(lake, r) if r.table in TABLES else _remove_scratch(lake, r)):
            continue
        else:
            log.info("retention: removed %s ds=%s: %s (%s)", r.table, r.ds, r.reason, r.path)
        done.append(r)
    if not dry_run:
        for table in TABLES:
            lake.vacuum(table)
    return done


def expire(lake: Lake, today: dt.date | str, protect: Iterable[tuple[str, dt.date | str]] = (),
           dry_run: bool = False, history_days: Optional[int] = None,
           keep_nights: Optional[dict[str, int]] = None) -> list[Removal]:
    """The maintenance step: `apply(plan(...))`."""
    return apply(lake, plan(lake, today, protect, history_days=history_days, keep_nights=keep_nights), dry_run)


def _remove_partition(lake: Lake, r: Removal) -> bool:
    committed = lake.committed(r.table)
    if committed and committed[-1] == r.ds:
        log.warning("retention: kept %s ds=%s: it is the newest committed partition of the table", r.table, r.ds)
        return False
    manifest = f"{r.path}/{SUCCESS}"
    if r.ds in committed:
        if lake.manifest(r.table, r.ds).get("attempt") != r.attempt:
            log.warning("retention: kept %s ds=%s: committed again since it was planned", r.table, r.ds)
            return False
        lake.fs.delete_file(manifest)  # one atomic delete: from here no reader lists or reads the partition
    elif r.kind == "partition" or lake.fs.get_file_info(manifest).type != pafs.FileType.NotFound:
        return False  # removed meanwhile, or an uncommitted night that got committed: both left alone
    fault_point("mid_retention")
    lake.fs.delete_dir(r.path)
    return True


def _remove_scratch(lake: Lake, r: Removal) -> bool:
    parts = tuple(r.path[len(lake.path()):].strip("/").split("/"))
    if r.kind == "empty":  # rmdir only: a run that began meanwhile keeps its folder
        if not isinstance(lake.fs, pafs.LocalFileSystem):
            return False
        lake.remove_empty(parts)
        return not os.path.isdir(r.path)
    try:  # a dead run's folder, or recommend's model artifact <run>.pkl; then the folders it left empty
        lake.remove_scratch(parts)
    except OSError:
        return False
    return True


def _dirs(lake: Lake, path: str) -> list[pafs.FileInfo]:
    return [i for i in lake.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
            if i.type == pafs.FileType.Directory]


def _idle(lake: Lake, info: pafs.FileInfo, now: float) -> float:
    """Seconds since anything in `info` (a file, or a folder and all in it) was last written; an object
    store keeps no folder times, only its files'."""
    inside = lake.fs.get_file_info(pafs.FileSelector(info.path, recursive=True)) \
        if info.type == pafs.FileType.Directory else []
    times = [i.mtime.timestamp() for i in [info, *inside] if i.mtime is not None]
    return now - max(times) if times else float("inf")
