"""Two lake roots, partition by partition: the check behind "behaviour stays identical" across a
refactor, and behind "an object-store night writes what a disk night writes".

    python bench/compare_lakes.py LAKE_A LAKE_B [--tables t1,t2]

Every committed partition of every table (or `--tables`) in both: Parquet rows sorted and compared
exactly (vectors and lists element by element), JSON documents equal, manifests equal; left out of
the comparison are what differs by design between two runs: run ids (also the quarantine's `run_id`
column), commit times, the config hash, attempt and file names, timing keys (`seconds`, `*_seconds`)
and the raw files' folder in `source_file`. Prints each difference and a count; exit code 1 when any.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genre_lib.lake.storage import Lake  # noqa: E402
from genre_lib.lake.tables import TABLES  # noqa: E402

BY_DESIGN = {"run_id", "committed_at", "config_hash", "attempt", "files"}


def scrub(x):
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if k not in BY_DESIGN and not k.endswith("seconds")}
    return [scrub(v) for v in x] if isinstance(x, list) else x


def rows(lake: Lake, table: str, ds: str, data_root: str) -> pd.DataFrame:
    df = lake.read_pandas(table, ds).drop(columns=["run_id"], errors="ignore")
    if "source_file" in df:
        df["source_file"] = df["source_file"].str.replace(data_root, "<root>", regex=False)
    for c in df.columns:
        df[c] = df[c].map(lambda v: json.dumps(v.tolist() if hasattr(v, "tolist") else v, default=str))
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def compare(a: Lake, b: Lake, tables: list[str]) -> list[str]:
    diffs = []
    for table in tables:
        da, db = a.committed(table), b.committed(table)
        if da != db:
            diffs.append(f"{table}: partitions {da} vs {db}")
            continue
        for ds in da:
            ma, mb = scrub(a.manifest(table, ds)), scrub(b.manifest(table, ds))
            if ma != mb:
                diffs.append(f"{table} ds={ds}: manifest {sorted(k for k in {**ma, **mb} if ma.get(k) != mb.get(k))}")
            if TABLES[table].schema is None:
                for name in sorted({f.rsplit("/", 1)[-1] for f in a.files(table, ds)}):
                    if scrub(a.read_json(table, ds, name)) != scrub(b.read_json(table, ds, name)):
                        diffs.append(f"{table} ds={ds}: {name} differs")
            elif not rows(a, table, ds, str(Path(a.root).parent)).equals(rows(b, table, ds, str(Path(b.root).parent))):
                diffs.append(f"{table} ds={ds}: rows differ")
    return diffs


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tables", default="")
    args = p.parse_args()
    tables = [t for t in args.tables.split(",") if t] or list(TABLES)
    a, b = Lake(args.a), Lake(args.b)
    diffs = compare(a, b, tables)
    for d in diffs:
        print(d)
    n = sum(len(a.committed(t)) for t in tables)
    print(f"{n} partitions of {len(tables)} tables compared, {len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
