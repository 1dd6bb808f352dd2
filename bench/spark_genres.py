"""Clean + genre weights at scale: Spark local (the pipeline's own code) versus DuckDB, same raw files.

    python bench/spark_genres.py [--sizes 1M,10M] [--set spark.shuffle_partitions=4 ...] [--stages]

Input: the synthetic generator's raw layout (Parquet, one file per day over 30 days) at an ML-25M-like
shape: 10M interactions over 162,541 users x 62,423 items (ML-25M's counts); the 1M input scales
users and items by 1/10, so interactions per user and per item stay the same. Generated once into
bench/out/spark_genres/ (git-ignored) and reused.

Spark side, timed: `clean.run` + `genres.run` on a fresh lake, with the session already started
(startup reported apart). It writes everything the nightly run writes: items_clean,
interactions_clean / interactions_quarantine (partitioned by day, reconciled), genre_vocab,
item_genres, user_genre_weights.

DuckDB side, timed, from the same raw files and items.jsonl, the same rules with the default config:
  catalogue: item_id trimmed, non-empty, last row per id wins; genres trimmed, distinct, without
             '(no genres listed)'
  validity:  user/item id present, ts parses (ISO-8601 or epoch seconds), ts < end of its ds day and
             >= clean.min_ts, rating (when given) a number in [rating_min, rating_max], event in
             clean.events, item in the catalogue, user not over clean.max_events_per_user_day valid
             events in the ts calendar day (bot rule)
  dedupe:    among valid rows of one (user, item, event), ordered by ts, a row within
             clean.dedupe_window_s of the previous one is a duplicate
  weights:   history = distinct (user, item, event, ts) of the clean rows; s(i,c) = 1/num_genres
             (multi_genre=split); f(u,c) = sum s(i,c); w_uc = f(u,c) / sum_k f(u,c_k); rank by
             (weight desc, genre)
and, like Spark, writes interactions_clean (partitioned by ds) and user_genre_weights as Parquet.
Checked: the clean/quarantine/duplicate counts match Spark's manifests, and every (user_id, genre)
has the same count and weight to 1e-9 (and the same rank).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from genre_lib.config.data import SyntheticConfig  # noqa: E402
from genre_lib.config.settings import PipelineConfig, load_config  # noqa: E402
from genre_lib.datasets import synthetic  # noqa: E402
from genre_lib.lake.spark import get_spark  # noqa: E402
from genre_lib.lake.storage import Lake  # noqa: E402
from genre_lib.stages import clean_interactions as clean  # noqa: E402
from genre_lib.stages import genre_weights as genres

OUT = ROOT / "bench" / "out" / "spark_genres"
SIZES = {"1M": (1_000_000, 16_254, 6_242), "10M": (10_000_000, 162_541, 62_423)}  # interactions, users, items
END = dt.date(2026, 11, 22)


# --- input -----------------------------------------------------------------------------------------
def raw_input(size: str) -> tuple[Path, SyntheticConfig]:
    n, users, items = SIZES[size]
    syn = SyntheticConfig(users=users, items=items, interactions=n, days=30, end_date=END, seed=42,
                          file_format="parquet")
    path = OUT / f"raw-{size}-{PipelineConfig(data={'synthetic': syn}).hash()}"
    done = path / "_GENERATED"
    if not done.exists():
        shutil.rmtree(path, ignore_errors=True)
        t = time.perf_counter()
        stats = synthetic.generate(syn, path)
        done.write_text(json.dumps({**stats, "seconds": round(time.perf_counter() - t, 1)}))
        print(f"[{size}] generated {stats} in {time.perf_counter() - t:.0f}s -> {path}", flush=True)
    return path, syn


# --- Spark -----------------------------------------------------------------------------------------
def run_spark(spark, cfg: PipelineConfig, lake_root: Path, stages: bool) -> dict:
    shutil.rmtree(lake_root, ignore_errors=True)
    lake = Lake(str(lake_root))
    manifest = {"run_id": "bench", "config_hash": cfg.hash()}
    mark = _stage_mark(spark) if stages else None
    t0 = time.perf_counter()
    totals = clean.run(spark, cfg, lake, END, manifest)
    t1 = time.perf_counter()
    g = genres.run(spark, cfg, lake, END, manifest)
    t2 = time.perf_counter()
    if stages:
        _print_stages(spark, mark)
    return {"clean_s": t1 - t0, "genres_s": t2 - t1, "total_s": t2 - t0, "totals": totals, "genres": g,
            "weights": lake.read_pandas("user_genre_weights", END),
            "files": sum(1 for _ in (lake_root / "interactions_clean").rglob("*.parquet"))}


def _stage_mark(spark) -> int:
    return max([s["stageId"] for s in _ui(spark, "stages")] or [-1])


def _ui(spark, what: str) -> list:
    sc = spark.sparkContext
    if not sc.uiWebUrl:
        return []
    with urllib.request.urlopen(f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/{what}") as r:
        return json.load(r)


def _print_stages(spark, after: int) -> None:
    """Where the time went: the stages of this run by executor time, with their shuffle volume."""
    rows = [s for s in _ui(spark, "stages?status=complete") if s["stageId"] > after]
    rows.sort(key=lambda s: -s["executorRunTime"])
    print(f"    {'stage':>5} {'tasks':>5} {'exec_s':>7} {'in_MB':>7} {'shufR_MB':>8} {'shufW_MB':>8} {'spill_MB':>8}  name")
    for s in rows[:12]:
        mb = lambda k: s.get(k, 0) / 2**20  # noqa: E731
        print(f"    {s['stageId']:>5} {s['numTasks']:>5} {s['executorRunTime'] / 1000:>7.1f} {mb('inputBytes'):>7.0f} "
              f"{mb('shuffleReadBytes'):>8.0f} {mb('shuffleWriteBytes'):>8.0f} {mb('diskBytesSpilled'):>8.0f}  "
              f"{s['name'][:60]}")
    print(f"    all stages: {sum(s['executorRunTime'] for s in rows) / 1000:.1f} executor-s over {len(rows)} stages")


# --- DuckDB ----------------------------------------------------------------------------------------
def run_duckdb(cfg: PipelineConfig, raw: Path, out: Path, threads: int) -> dict:
    import duckdb

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    c, g = cfg.clean, cfg.genres
    assert g.multi_genre == "split" and not g.rating_weighted and not g.half_life_days and g.shrinkage == 0 \
        and g.min_interactions == 1 and g.lookback_days is None, "the DuckDB side implements the default genres config"
    con = duckdb.connect()
    con.execute(f"SET threads={threads}; SET TimeZone='UTC'; SET preserve_insertion_order=false; SET enable_progress_bar=false")
    lit = lambda v: "'" + str(v).replace("'", "''") + "'"  # noqa: E731
    events = ", ".join(lit(e) for e in c.events)
    t0 = time.perf_counter()
    con.execute(f"""
    CREATE TEMP TABLE items AS
    WITH r AS (SELECT trim(CAST(item_id AS VARCHAR)) AS item_id, genres, row_number() OVER () AS rn
               FROM read_json({lit(raw / 'items.jsonl')}, format='newline_delimited'))
    SELECT item_id, list_distinct(list_filter(list_transform(genres, x -> trim(x)),
                                              x -> x <> '' AND x <> '(no genres listed)')) AS genres
    FROM r WHERE item_id IS NOT NULL AND item_id <> ''
    QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY rn DESC) = 1""")
    con.execute(f"""
    CREATE TEMP TABLE labelled AS
    WITH raw AS (
      SELECT regexp_extract(filename, 'ds=(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1) AS ds,
             nullif(trim(CAST(user_id AS VARCHAR)), '') AS uid, nullif(trim(CAST(item_id AS VARCHAR)), '') AS iid,
             lower(trim(CAST(event AS VARCHAR))) AS event, trim(CAST(rating AS VARCHAR)) AS rating_text,
             trim(CAST(ts AS VARCHAR)) AS ts_text
      FROM read_parquet({lit(raw / 'interactions' / 'ds=*' / '*.parquet')}, filename=true)),
    typed AS (
      SELECT *, CASE WHEN regexp_full_match(ts_text, '-?\\d+(\\.\\d+)?') THEN to_timestamp(TRY_CAST(ts_text AS DOUBLE))
                     ELSE TRY_CAST(ts_text AS TIMESTAMPTZ) END AS ts,
             rating_text IS NOT NULL AND rating_text <> '' AND lower(rating_text) <> 'null' AS has_rating,
             TRY_CAST(rating_text AS DOUBLE) AS rating
      FROM raw),
    valid AS (
      SELECT *, uid IS NOT NULL AND iid IS NOT NULL AND ts IS NOT NULL
                AND ts < CAST(CAST(ds AS DATE) + 1 AS TIMESTAMPTZ) AND ts >= CAST({lit(c.min_ts)} AS TIMESTAMPTZ)
                AND (NOT has_rating OR (rating IS NOT NULL AND rating BETWEEN {c.rating_min} AND {c.rating_max}
                                        AND NOT isnan(rating)))
                AND event IN ({events}) AND iid IN (SELECT item_id FROM items) AS ok
      FROM typed),
    bots AS (
      SELECT *, ok AND count(*) FILTER (WHERE ok) OVER (PARTITION BY uid, CAST(ts AS DATE)) <= {c.max_events_per_user_day} AS ok2
      FROM valid)
    SELECT ds, uid AS user_id, iid AS item_id, event, rating, ts,
           CASE WHEN NOT ok2 THEN 'quarantine'
                WHEN epoch(ts) - lag(epoch(ts)) OVER (PARTITION BY uid, iid, event, ok2 ORDER BY ts) <= {c.dedupe_window_s}
                THEN 'duplicate' ELSE 'clean' END AS status
    FROM bots""")
    counts = dict(con.execute("SELECT status, count(*) FROM labelled GROUP BY ALL").fetchall())
    con.execute(f"""COPY (SELECT user_id, item_id, event, rating, ts, ds FROM labelled WHERE status = 'clean')
                    TO {lit(out / 'interactions_clean')} (FORMAT parquet, PARTITION_BY (ds))""")
    con.execute(f"""
    COPY (
      WITH hist AS (SELECT DISTINCT user_id, item_id, event, ts FROM labelled WHERE status = 'clean'),
      ig AS (SELECT item_id, unnest(genres) AS genre, 1.0::DOUBLE / len(genres) AS score FROM items WHERE len(genres) > 0),
      f AS (SELECT user_id, genre, sum(score) AS count FROM hist JOIN ig USING (item_id) GROUP BY ALL),
      w AS (SELECT *, count / sum(count) OVER (PARTITION BY user_id) AS weight FROM f)
      SELECT user_id, genre, count, weight,
             CAST(row_number() OVER (PARTITION BY user_id ORDER BY weight DESC, genre) AS INTEGER) AS rank
      FROM w WHERE weight > 0)
    TO {lit(out / 'user_genre_weights.parquet')} (FORMAT parquet)""")
    t1 = time.perf_counter()
    weights = pd.read_parquet(out / "user_genre_weights.parquet")
    return {"total_s": t1 - t0, "counts": counts, "weights": weights}


# --- the comparison --------------------------------------------------------------------------------
def check(size: str, s: dict, d: dict) -> None:
    want = {"clean": s["totals"]["clean_rows"], "quarantine": s["totals"]["quarantined_rows"],
            "duplicate": s["totals"]["duplicate_rows"]}
    got = {k: d["counts"].get(k, 0) for k in want}
    assert got == want, f"[{size}] row counts differ: spark {want}, duckdb {got}"
    m = s["weights"].merge(d["weights"], on=["user_id", "genre"], how="outer", suffixes=("_s", "_d"), indicator=True)
    only = m[m["_merge"] != "both"]
    assert only.empty, f"[{size}] (user, genre) pairs on one side only:\n{only.head()}"
    dw = (m.weight_s - m.weight_d).abs().max()
    dc = (m.count_s - m.count_d).abs().max()
    assert dw <= 1e-9 and dc <= 1e-9, f"[{size}] weights differ: max |dw| {dw:.3g}, max |dcount| {dc:.3g}"
    # ranks may differ only between genres whose weights tie (equal up to summation order)
    m["_w"] = m.weight_d.round(12)
    tied = m.groupby(["user_id", "_w"])["genre"].transform("size") > 1
    diff = m.rank_s != m.rank_d
    assert not (diff & ~tied).any(), f"[{size}] ranks differ outside ties:\n{m[diff & ~tied].head()}"
    print(f"[{size}] same result: {want}; {len(m):,} (user, genre) weights, max |dw| {dw:.2g}, "
          f"max |dcount| {dc:.2g}; ranks equal except {int(diff.sum())} within tied weights", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1M,10M")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the Spark side, e.g. spark.shuffle_partitions=4")
    p.add_argument("--duckdb-threads", type=int, default=0, help="default: the cores Spark's local[*] uses")
    p.add_argument("--stages", action="store_true", help="print Spark's stages by executor time")
    p.add_argument("--skip-duckdb", action="store_true")
    args = p.parse_args(argv)
    sizes = args.sizes.split(",")

    inputs = {size: raw_input(size) for size in sizes}
    base = load_config(None, args.overrides)
    t = time.perf_counter()
    spark = get_spark(base, "bench")
    startup = time.perf_counter() - t
    cores = spark.sparkContext.defaultParallelism
    threads = args.duckdb_threads or cores
    print(f"Spark {spark.version} {spark.sparkContext.master} ({cores} cores), session start {startup:.1f}s; "
          f"shuffle_partitions={base.spark.shuffle_partitions}, driver_memory={base.spark.driver_memory}; "
          f"DuckDB threads={threads}", flush=True)

    res = {}
    for size in sizes:
        path, syn = inputs[size]
        cfg = base.model_copy(deep=True)
        cfg.data.format, cfg.data.path, cfg.data.synthetic = "raw", str(path), syn
        s = run_spark(spark, cfg, OUT / f"lake-{size}", args.stages)
        print(f"[{size}] spark: clean {s['clean_s']:.1f}s + genres {s['genres_s']:.1f}s = {s['total_s']:.1f}s; "
              f"{s['totals']}; {s['files']} interactions_clean files", flush=True)
        d = None
        if not args.skip_duckdb:
            d = run_duckdb(cfg, path, OUT / f"duckdb-{size}", threads)
            print(f"[{size}] duckdb: {d['total_s']:.1f}s", flush=True)
            check(size, s, d)
        res[size] = (s, d)

    print("\n| size | rows | Spark clean s | Spark genres s | Spark total s | DuckDB s | Spark/DuckDB |")
    print("|---|---|---|---|---|---|---|")
    for size, (s, d) in res.items():
        dd = f"{d['total_s']:.1f} | {s['total_s'] / d['total_s']:.2f}x" if d else "- | -"
        print(f"| {size} | {s['totals']['raw_rows']:,} | {s['clean_s']:.1f} | {s['genres_s']:.1f} | {s['total_s']:.1f} | {dd} |")
    if "1M" in res and "10M" in res:
        (s1, d1), (s10, d10) = res["1M"], res["10M"]
        line = f"growth 1M -> 10M (10x rows): Spark {s10['total_s'] / s1['total_s']:.1f}x"
        if d1 and d10:
            line += f", DuckDB {d10['total_s'] / d1['total_s']:.1f}x"
        print(line)
    spark.stop()


if __name__ == "__main__":
    main()
