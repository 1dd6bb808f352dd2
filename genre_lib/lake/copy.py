"""Copy committed partitions from one lake root to another through the lake's own commit, e.g. a
local lake into an object store: `python -m genre_lib.lake.copy --from lake --to s3a://bucket/lake
[--tables t1,t2] [--ds YYYY-MM-DD ...]`. Each partition is read by its manifest's files and committed in
the target as a new attempt whose manifest keeps the source's (run id, row count, config hash...)."""
from __future__ import annotations

import argparse
from typing import Iterable, Optional

from genre_lib.lake.storage import COMMIT_KEYS, Lake
from genre_lib.lake.tables import TABLES


def copy_partition(src: Lake, dst: Lake, table: str, ds: str) -> dict:
    man = src.manifest(table, ds)
    attempt = dst.staging(table, ds)
    for path in src.files(table, ds, man):
        with src.fs.open_input_stream(path) as fin, dst.fs.open_output_stream(f"{attempt}/{path.rsplit('/', 1)[-1]}") as fout:
            while chunk := fin.read(1 << 24):
                fout.write(chunk)
    # the target's commit sets its own COMMIT_KEYS; the rest (run id, row count, config hash...) is kept
    return dst.commit(table, ds, attempt, {k: v for k, v in man.items() if k not in COMMIT_KEYS})


def copy(src: Lake, dst: Lake, tables: Optional[Iterable[str]] = None, dates: Optional[Iterable[str]] = None) -> int:
    """Every committed partition of `tables` (default all), only `dates` when given; the number copied."""
    n = 0
    for table in tables or TABLES:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; the contract's tables: {list(TABLES)}")
        for ds in src.committed(table):
            if dates is None or ds in set(dates):
                copy_partition(src, dst, table, ds)
                n += 1
    return n


def main(argv: Optional[list[str]] = None) -> int:
    from genre_lib.config.settings import resolve_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="src", required=True, help="source lake root")
    p.add_argument("--to", dest="dst", required=True, help="target lake root")
    p.add_argument("--tables", default="", help="comma-separated tables (default: all)")
    p.add_argument("--ds", nargs="*", help="only these nights")
    a = p.parse_args(argv)
    n = copy(Lake(resolve_path(a.src)), Lake(resolve_path(a.dst)), [t for t in a.tables.split(",") if t] or None, a.ds)
    print(f"copied {n} partitions from {a.src} to {a.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
