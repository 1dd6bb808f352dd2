"""Clean raw interaction logs in Spark: every raw row ends clean, quarantined with one reason code,
or counted as a removed duplicate, and the three add up to the rows counted in the files themselves.

Raw rows are read as text (JSON Lines, CSV, MovieLens TSV) or Parquet, kept as strings so that a
quarantined row keeps every field exactly as it arrived, then labelled with one `F.when` chain.
"""
from __future__ import annotations

import csv
import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from genre_lib.config import PipelineConfig
from genre_lib.datasets import movielens

log = logging.getLogger(__name__)

RAW_FIELDS = ["user_id", "item_id", "event", "rating", "ts"]
REASONS = ["malformed_line", "schema_drift", "missing_id", "bad_timestamp", "future_timestamp",
           "too_old_timestamp", "bad_rating", "rating_out_of_range", "unknown_event", "unknown_item", "bot_user"]
_DS = re.compile(r"ds=(\d{4}-\d{2}-\d{2})")
_EXT = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".tsv": "tsv"}


class SchemaDriftError(ValueError):
    """A whole raw file has the wrong columns."""


@dataclass
class RawSource:
    """The raw files one clean run reads, grouped by format, and the days they cover."""
    days: list[str]
    files: dict[str, list[str]] = field(default_factory=dict)  # format -> files
    snapshot: bool = False  # one file holds all history (MovieLens): it all belongs to the run date
    missing_days: list[str] = field(default_factory=list)


# --- where the raw rows are ------------------------------------------------------------------------
def plan_raw_days(cfg: PipelineConfig, run_date: dt.date, committed: list[str]) -> RawSource:
    """Which raw days the run for `run_date` (re)cleans: the late window [D - late_days, D], plus
    with `clean.catch_up` every earlier raw day that has no committed clean partition yet."""
    fmt, path = cfg.data.format, Path(cfg.data_path)
    ds = run_date.isoformat()
    if fmt == "movielens-100k":
        return RawSource([ds], {"ml100k": [str(movielens._require(path / "u.data"))]}, snapshot=True)
    if fmt == "movielens-csv":
        return RawSource([ds], {"mlcsv": [str(movielens.interactions_csv_path(path))]}, snapshot=True)
    inter = path / "interactions"
    if not path.exists():
        raise FileNotFoundError(f"data.path: {path} not found")
    day_dirs = {m.group(1): d for d in inter.glob("ds=*") if (m := _DS.fullmatch(d.name))} if inter.exists() else {}
    if not day_dirs:  # a flat export: every file is tonight's
        files = _files_by_format(_data_files(inter)) if inter.exists() else {}
        return RawSource([ds], files, snapshot=True)
    window = {(run_date - dt.timedelta(days=k)).isoformat() for k in range(cfg.clean.late_days + 1)}
    wanted = {d for d in day_dirs if d in window}
    if cfg.clean.catch_up:
        wanted |= {d for d in day_dirs if d < ds and d not in committed}
    wanted.add(ds)
    files: list[Path] = []
    missing = []
    for d in sorted(wanted):
        if d in day_dirs:
            files += _data_files(day_dirs[d])
        elif d == ds:
            missing.append(d)
    return RawSource(sorted(wanted), _files_by_format(files), missing_days=missing)


def _data_files(folder: Path) -> list[Path]:
    """Files under `folder`, less the ones tools leave beside data (`.DS_Store`, `_SUCCESS`,
    `_temporary/`): a name, or a folder on the way to it, starting with `.` or `_` is not data."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts))


def _files_by_format(files: list[Path]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in files:
        fmt = _EXT.get(p.suffix.lower())
        if fmt is None:
            raise SchemaDriftError(f"raw file {p}: unknown format (expected .jsonl, .csv or .parquet)")
        out.setdefault(fmt, []).append(str(p))
    return out


# --- reading into one string-typed frame ---------------------------------------------------------
# A text line that is blank or repeats its file's header is not a row: it carries no fields. Such
# lines are dropped while reading but counted (`blank_lines`, `header_lines` in the manifest), so
# every line read is accounted for: lines = raw_rows + blank_lines + header_lines.
_ML_RENAME = {"userId": "user_id", "movieId": "item_id", "timestamp": "ts"}


@dataclass
class _TextSource:
    files: list[str]
    header_lines: tuple[str, ...]  # the exact header texts of these files; () when headerless
    parse: object  # lines frame -> frame of read_raw's columns


def _text_sources(src: RawSource) -> list[_TextSource]:
    out = []
    for fmt, files in src.files.items():
        if fmt == "jsonl":
            out.append(_TextSource(files, (), _parse_jsonl))
        elif fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            for header, (group, texts) in _group_by_header(files, sep).items():
                out.append(_TextSource(group, texts, lambda df, h=header, s=sep: _parse_delimited(df, h, s)))
        elif fmt == "ml100k":
            out.append(_TextSource(files, (), lambda df: _parse_delimited(df, ("user_id", "item_id", "rating", "ts"), "\t")))
        elif fmt == "mlcsv":
            texts = tuple(sorted({_first_line(f) for f in files}))
            header = _parse_header(texts[0], ",")
            out.append(_TextSource(files, texts, lambda df, h=header: _parse_delimited(df, h, ",", rename=_ML_RENAME)))
    return out


def read_raw(spark, src: RawSource, run_date: dt.date):
    """Columns: source_file, raw (the text line; null for Parquet rows, see quarantine_raw), ds,
    parse_error, and the raw fields as strings."""
    from pyspark.sql import functions as F

    parts = [t.parse(_lines(spark, t.files).where(_line_kind(t.header_lines).isNull())) for t in _text_sources(src)]
    if "parquet" in src.files:
        parts.append(_read_parquet(spark, src.files["parquet"]))
    if not parts:
        return None
    df = parts[0]
    for p in parts[1:]:
        df = df.unionByName(p)
    day = F.regexp_extract("source_file", _DS.pattern, 1)
    if src.snapshot:
        return df.withColumn("ds", F.lit(run_date.isoformat()))
    return df.withColumn("ds", F.when(day == "", F.lit(run_date.isoformat())).otherwise(day))


def count_raw(spark, src: RawSource, run_date: dt.date) -> dict[str, dict[str, int]]:
    """Per raw day: `raw_rows`, `blank_lines`, `header_lines`, counted straight from the files (a
    scan of the text lines; Parquet footers) and not from the parsed or labelled frame, so that the
    reconciliation catches a row lost or doubled anywhere after reading."""
    from pyspark.sql import functions as F

    per_day: dict[str, dict[str, int]] = {d: {"read": 0, "blank_lines": 0, "header_lines": 0} for d in src.days}

    def add(path: str, read: int, blank: int = 0, header: int = 0) -> None:
        m = None if src.snapshot else _DS.search(path)  # the same rule as read_raw's `ds`
        tot = per_day.setdefault(m.group(1) if m else run_date.isoformat(), {"read": 0, "blank_lines": 0, "header_lines": 0})
        tot["read"] += read
        tot["blank_lines"] += blank
        tot["header_lines"] += header

    frames = []
    for t in _text_sources(src):
        frames.append(_lines(spark, t.files).select("source_file", _line_kind(t.header_lines).alias("kind")))
    if frames:
        df = frames[0]
        for f in frames[1:]:
            df = df.unionByName(f)
        # one row per file comes back, not per line
        kind = F.col("kind")
        for r in df.groupBy("source_file").agg(F.count(F.lit(1)).alias("n"), F.count_if(kind == "blank").alias("b"),
                                               F.count_if(kind == "header").alias("h")).collect():
            add(r["source_file"], r["n"], r["b"], r["h"])
    for f in src.files.get("parquet", []):
        add(f, pq.read_metadata(f).num_rows)
    return {d: {"raw_rows": v["read"] - v["blank_lines"] - v["header_lines"], "blank_lines": v["blank_lines"],
                "header_lines": v["header_lines"]} for d, v in per_day.items()}


def _lines(spark, files):
    """Every text line of the files, none dropped (see _line_kind for the ones that are not rows)."""
    from pyspark.sql import functions as F
    return spark.read.text(files).select(F.col("value").alias("raw"), F.col("_metadata.file_path").alias("source_file"))


def _line_kind(header_lines: tuple[str, ...]):
    """'blank' | 'header' | null (a row). A header is recognised by its exact text (less a BOM), so
    a repeated header in concatenated exports is skipped too, and a data row never is."""
    from pyspark.sql import functions as F

    kind = F.when(F.trim("raw") == "", F.lit("blank"))
    if header_lines:
        text = F.regexp_replace("raw", "^\ufeff", "")
        kind = kind.when(text.isin(*[h.lstrip("\ufeff") for h in header_lines]), F.lit("header"))
    return kind


def _parse_jsonl(df):
    from pyspark.sql import functions as F

    df = df.withColumn("_m", F.from_json("raw", "map<string,string>"))
    expected = F.array(*[F.lit(c) for c in RAW_FIELDS])
    keys = F.map_keys("_m")
    drift = (F.size(F.array_except(keys, expected)) > 0) | (F.size(F.array_except(expected, keys)) > 0)
    err = F.when(F.col("_m").isNull(), "malformed_line").when(drift, "schema_drift")
    return df.select("source_file", "raw", err.alias("parse_error"), *[F.col("_m")[c].alias(c) for c in RAW_FIELDS])


def _first_line(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline().rstrip("\r\n")


def _parse_header(line: str, sep: str) -> tuple[str, ...]:
    """Column names of a header line, parsed as CSV: quoted names, a BOM, spaces after commas."""
    return tuple(h.strip() for h in next(csv.reader([line.lstrip("\ufeff")], delimiter=sep, skipinitialspace=True), []))


def _group_by_header(files: list[str], sep: str) -> dict[tuple, tuple[list[str], tuple[str, ...]]]:
    """header columns -> (files, the header texts as they appear in those files)."""
    groups: dict[tuple, tuple[list[str], set[str]]] = {}
    for f in files:
        line = _first_line(f)
        header = _parse_header(line, sep)
        _check_columns(f, header)
        group = groups.setdefault(header, ([], set()))
        group[0].append(f)
        group[1].add(line)
    return {h: (fs, tuple(sorted(texts))) for h, (fs, texts) in groups.items()}


def _drift_message(path: str, extra, missing) -> str:
    return (f"raw file {path}: wrong columns (extra: {sorted(extra) or 'none'}, missing: {sorted(missing) or 'none'}); "
            f"expected {RAW_FIELDS}")


def _check_columns(path: str, columns) -> None:
    extra, missing = set(columns) - set(RAW_FIELDS), set(RAW_FIELDS) - set(columns)
    if extra or missing:
        raise SchemaDriftError(_drift_message(path, extra, missing))


def _parse_delimited(df, header: tuple, sep: str, rename: dict | None = None):
    """A real CSV parse of each line (quotes, `""` escapes, separators inside quotes), as strings;
    a line with an unbalanced quote is malformed, one with the wrong number of fields drifted."""
    from pyspark.sql import functions as F

    names = [(rename or {}).get(h, h) for h in header]
    schema = ", ".join(f"_c{i} string" for i in range(len(names))) + ", _corrupt string"
    opts = {"sep": sep, "mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt", "escape": '"',
            "ignoreLeadingWhiteSpace": "true", "ignoreTrailingWhiteSpace": "true"}
    df = df.withColumn("_p", F.from_csv("raw", schema, opts))
    cols = {n: F.nullif(F.trim(F.col(f"_p._c{i}")), F.lit("")) for i, n in enumerate(names)}
    cols.setdefault("event", F.lit("rate"))
    # an unclosed quote swallows the rest of the line, which can still yield the right field count
    unbalanced = F.length(F.regexp_replace("raw", '[^"]', "")) % 2 == 1
    err = F.when(unbalanced, "malformed_line").when(F.col("_p._corrupt").isNotNull(), "schema_drift")
    return df.select("source_file", "raw", err.alias("parse_error"), *[cols[c].alias(c) for c in RAW_FIELDS])


def _read_parquet(spark, files):
    from pyspark.sql import functions as F

    for f in files:
        _check_columns(f, pq.read_schema(f).names)
    df = spark.read.parquet(*files)
    as_text = [F.col(c).cast("string").alias(c) for c in RAW_FIELDS]
    # no `raw` text per row: a Parquet row's raw text is its fields as JSON (quarantine_raw), built
    # only for the rows that end in quarantine rather than carried through the shuffle for all
    return df.select(F.col("_metadata.file_path").alias("source_file"), *as_text).select(
        "source_file", F.lit(None).cast("string").alias("raw"), F.lit(None).cast("string").alias("parse_error"),
        *RAW_FIELDS)


def quarantine_raw():
    """The `raw` column of interactions_quarantine: the line as read, or a Parquet row's fields as JSON."""
    from pyspark.sql import functions as F
    return F.coalesce(F.col("raw"), F.to_json(F.struct(*RAW_FIELDS)))


# --- labelling -----------------------------------------------------------------------------------
def label_rows(cfg: PipelineConfig, raw, item_ids):
    """Adds `status` (clean | quarantine | duplicate), `reason` and typed columns to the raw frame."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    c = cfg.clean
    uid, iid = F.trim("user_id"), F.trim("item_id")
    ts_text = F.trim("ts")
    ts = F.when(ts_text.rlike(r"^-?\d+(\.\d+)?$"), F.timestamp_seconds(ts_text.try_cast("double"))) \
          .otherwise(F.try_to_timestamp(ts_text))
    rating_text = F.trim("rating")
    has_rating = rating_text.isNotNull() & (rating_text != "") & (F.lower(rating_text) != "null")
    rating = F.when(has_rating, rating_text.try_cast("double"))
    day_end = F.to_timestamp(F.date_add(F.to_date("ds"), 1))
    known = item_ids.select(F.col("item_id").alias("_known_item")).distinct()

    df = (raw.withColumn("_uid", uid).withColumn("_iid", iid).withColumn("_ts", ts).withColumn("_rating", rating)
          .withColumn("_event", F.lower(F.trim("event")))
          .join(F.broadcast(known), F.col("_iid") == F.col("_known_item"), "left"))
    reason = (F.when(F.col("parse_error").isNotNull(), F.col("parse_error"))
              .when(F.col("_uid").isNull() | (F.col("_uid") == "") | F.col("_iid").isNull() | (F.col("_iid") == ""),
                    "missing_id")
              .when(F.col("_ts").isNull(), "bad_timestamp")
              .when(F.col("_ts") >= day_end, "future_timestamp")
              .when(F.col("_ts") < F.lit(c.min_ts), "too_old_timestamp")
              .when(has_rating & F.col("_rating").isNull(), "bad_rating")
              .when(F.col("_rating").isNotNull() & ((F.col("_rating") < c.rating_min) | (F.col("_rating") > c.rating_max)
                                                    | F.isnan("_rating")), "rating_out_of_range")
              .when(~F.col("_event").isin(*c.events), "unknown_event")
              .when(F.col("_known_item").isNull(), "unknown_item"))
    # One shuffle, by user, feeds both windows below (their partition keys all start with the user),
    # instead of one exchange and a full re-sort of the wide raw rows per window. Only what a later
    # step reads crosses it: the parsed fields, and the texts a quarantined row must keep.
    df = df.select("source_file", "ds", "raw", *RAW_FIELDS, "_uid", "_iid", "_ts", "_rating", "_event",
                   reason.alias("reason")).repartition("_uid")

    # bot-like users: too many otherwise valid events in one calendar day
    per_day = Window.partitionBy("_uid", F.to_date("_ts"))
    n_day = F.sum(F.when(F.col("reason").isNull(), 1).otherwise(0)).over(per_day)
    df = df.withColumn("reason", F.when(F.col("reason").isNull() & (n_day > c.max_events_per_user_day), "bot_user")
                       .otherwise(F.col("reason")))

    # duplicates: a repeat of the same user/item/event within the dedupe window of the previous one
    # (the lags are computed once, as columns: window expressions repeated in two withColumn calls
    # made Spark evaluate the window twice, with an extra exchange and sort of every row)
    df = df.withColumn("_valid", F.col("reason").isNull())
    # ties in (ts, rating) break by day and file: rows equal in all of these are equal in every
    # output column, so which of them stays clean changes nothing (no need to sort by the raw text)
    key = Window.partitionBy("_uid", "_iid", "_event", "_valid").orderBy(
        "_ts", F.col("_rating").asc_nulls_first(), "ds", "source_file")
    secs = F.col("_ts").cast("double")
    df = df.select("*", (secs - F.lag(secs).over(key)).alias("_gap"), F.lag("_rating").over(key).alias("_prev_rating"))
    valid, gap = F.col("_valid"), F.col("_gap")
    is_dup = valid & gap.isNotNull() & (gap <= c.dedupe_window_s)
    exact = is_dup & (gap == 0) & F.col("_rating").eqNullSafe(F.col("_prev_rating"))
    status = F.when(is_dup, "duplicate").when(valid, "clean").otherwise("quarantine")
    # the raw texts only where they are written (quarantine): the persisted frame stays narrow
    quarantined = F.col("status") == "quarantine"
    return (df.withColumn("status", status).withColumn("dup_kind", F.when(exact, "exact").when(is_dup, "near"))
              .select("source_file", "ds", "status", "reason", "dup_kind", "_uid", "_iid", "_ts", "_rating", "_event",
                      *[F.when(quarantined, F.col(c)).alias(c) for c in ("raw", *RAW_FIELDS)]))


# --- the catalogue -------------------------------------------------------------------------------
def load_catalogue(cfg: PipelineConfig) -> tuple[pd.DataFrame, dict]:
    """items_clean as pandas (catalogues are small) and counts of what was dropped."""
    fmt, path = cfg.data.format, Path(cfg.data_path)
    if fmt == "movielens-100k":
        items = movielens.load_100k_items(path)
    elif fmt == "movielens-csv":
        items = movielens.load_csv_items(path)
    else:
        items = _read_items_file(path)
    return normalise_items(items)


def _read_items_file(path: Path) -> pd.DataFrame:
    for name, reader in (("items.parquet", pd.read_parquet), ("items.jsonl", lambda p: pd.read_json(p, lines=True, dtype=False)),
                         ("items.csv", lambda p: pd.read_csv(p, dtype=str))):
        if (path / name).exists():
            return reader(path / name)
    raise FileNotFoundError(f"data.path: no items.parquet, items.jsonl or items.csv in {path}")


def _genre_list(v) -> list[str]:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return []
    if isinstance(v, str):
        parts = v.split("|")
    else:
        parts = list(v)
    return sorted({str(p).strip() for p in parts if str(p).strip() and str(p).strip() != "(no genres listed)"})


def normalise_items(items: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    missing = sorted({"item_id", "title"} - set(items.columns))
    if missing:
        raise SchemaDriftError(f"catalogue: missing columns {missing}")
    df = items.copy()
    for col in ("description", "tags", "genres"):
        if col not in df.columns:
            df[col] = None
    df["item_id"] = df["item_id"].astype("string").str.strip()
    no_id = df["item_id"].isna() | (df["item_id"] == "")
    df = df[~no_id]
    dupes = int(df.duplicated("item_id").sum())
    df = df.drop_duplicates("item_id", keep="last")
    text = lambda s: s.where(s.notna(), None).map(lambda v: None if v is None or str(v).strip() == "" else str(v))
    out = pd.DataFrame({"item_id": df["item_id"].astype(str), "title": text(df["title"]).fillna(""),
                        "description": text(df["description"]), "genres": df["genres"].map(_genre_list),
                        "tags": text(df["tags"])}).sort_values("item_id").reset_index(drop=True)
    return out, {"items_without_id": int(no_id.sum()), "items_duplicate_id": dupes, "items": len(out)}


# --- the stage -----------------------------------------------------------------------------------
def run(spark, cfg: PipelineConfig, lake, run_date: dt.date, manifest: dict) -> dict:
    """Clean tonight's raw days into interactions_clean / interactions_quarantine (one partition
    per raw day) and the catalogue into items_clean; returns run totals for MLflow."""
    from pyspark.sql import functions as F

    ds = run_date.isoformat()
    items, item_stats = load_catalogue(cfg)
    lake.write_pandas("items_clean", ds, items, {**manifest, **item_stats})

    src = plan_raw_days(cfg, run_date, lake.committed("interactions_clean"))
    for d in src.missing_days:
        log.warning("no raw file for %s: committing an empty partition", d)
    # counted before anything is parsed: the books below balance against the files, not the labels
    # (a file that grows while the run reads it fails the check; the rerun picks it up whole)
    read = count_raw(spark, src, run_date)
    stray = sorted(set(read) - set(src.days))
    if stray:  # rows of a day this run does not own would never be committed
        raise RuntimeError(f"raw rows for days outside this run's {src.days}: {stray}")
    raw = read_raw(spark, src, run_date)
    counts: dict[tuple, int] = {}
    staged = {}
    if raw is not None:
        item_ids = spark.createDataFrame(items[["item_id"]])
        labelled = label_rows(cfg, raw, item_ids).persist()
        rows = labelled.groupBy("ds", "source_file", "status", "reason", "dup_kind").count().collect()
        counts = {(r["ds"], r["source_file"], r["status"], r["reason"], r["dup_kind"]): r["count"] for r in rows}
        _refuse_drifted_files(counts, labelled)
        clean = labelled.where(F.col("status") == "clean").select(
            F.col("_uid").alias("user_id"), F.col("_iid").alias("item_id"), F.col("_event").alias("event"),
            F.col("_rating").alias("rating"), F.col("_ts").alias("ts"), "ds")
        quarantine = labelled.where(F.col("status") == "quarantine").withColumn("run_id", F.lit(manifest["run_id"])) \
            .withColumn("raw", quarantine_raw())
        for table, frame in (("interactions_clean", clean), ("interactions_quarantine", quarantine)):
            staged[table] = lake.staging(table, ds)
            lake.spark_write(table, frame.select(*[c for c in _contract_cols(table)], "ds"), staged[table], partition_by="ds")
        labelled.unpersist()

    totals = {"raw_rows": 0, "clean_rows": 0, "quarantined_rows": 0, "duplicate_rows": 0, "blank_lines": 0,
              "header_lines": 0}
    plans = []
    for day in src.days:
        want = {**read[day], **_day_counts(counts, day)}
        parts = {}
        for table, key in (("interactions_clean", "clean_rows"), ("interactions_quarantine", "quarantined_rows")):
            folder = f"{staged[table]}/ds={day}" if table in staged else None
            if folder is None or lake.fs.get_file_info(folder).type.name == "NotFound":
                folder = lake.staging(table, day)
                lake.write_empty(table, folder)
            written = lake.count_rows(folder)
            if written != want[key]:
                raise RuntimeError(f"{table} ds={day}: wrote {written} rows, labelled {want[key]}")
            parts[table] = folder
        if want["raw_rows"] != want["clean_rows"] + want["quarantined_rows"] + want["duplicate_rows"]:
            raise RuntimeError(f"reconciliation failed for ds={day}: raw_rows (counted in the files) != "
                               f"clean_rows + quarantined_rows + duplicate_rows: {want}")
        plans.append((day, parts, want))
        for k in totals:
            totals[k] += want[k]
    # commit only once every day has reconciled, so a failure leaves last night's tables as they were
    for day, parts, want in plans:
        extra = {**manifest, **want, "missing_input": day in src.missing_days}
        lake.commit("interactions_quarantine", day, parts["interactions_quarantine"], {**extra, "row_count": want["quarantined_rows"]})
        lake.commit("interactions_clean", day, parts["interactions_clean"], {**extra, "row_count": want["clean_rows"]})
    for folder in staged.values():
        lake.fs.delete_dir(folder)
    by_reason: dict[str, int] = {}
    for (_, _, status, reason, kind), n in counts.items():
        name = reason if status == "quarantine" else f"duplicate_{kind}" if status == "duplicate" else None
        if name:
            by_reason[name] = by_reason.get(name, 0) + n
    return {**totals, **{f"quarantine.{k}": v for k, v in by_reason.items()}, "days_cleaned": len(src.days),
            "items": item_stats["items"]}


def _contract_cols(table: str) -> list[str]:
    from genre_lib.tables import SCHEMAS
    return SCHEMAS[table][1].names


def _day_counts(counts: dict, day: str) -> dict:
    """What labelling made of a day's rows; raw_rows comes from count_raw, never from here."""
    out = {"clean_rows": 0, "quarantined_rows": 0, "duplicate_rows": 0}
    key = {"clean": "clean_rows", "quarantine": "quarantined_rows", "duplicate": "duplicate_rows"}
    for (d, _, status, _, _), n in counts.items():
        if d == day:
            out[key[status]] += n
    return out


def _refuse_drifted_files(counts: dict, labelled) -> None:
    """A file in which every row has the wrong columns is a wrong file, not dirty rows: fail, naming
    per file the columns its rows added or lacked (JSON Lines keys; CSV/Parquet headers are checked
    before reading, so a CSV file here has rows that all disagree with its header in length)."""
    from pyspark.sql import functions as F

    per_file: dict[str, list[int]] = {}
    for (_, f, _, reason, _), n in counts.items():
        tot = per_file.setdefault(f, [0, 0])
        tot[0] += n
        tot[1] += n if reason == "schema_drift" else 0
    bad = sorted(f for f, (n, drift) in per_file.items() if n > 0 and drift == n)
    if not bad:
        return
    # only on this error path, and only over the bad files: one row per file comes back
    keys = F.map_keys(F.from_json("raw", "map<string,string>"))
    expected = F.array(*[F.lit(c) for c in RAW_FIELDS])
    union = lambda a: F.array_sort(F.array_distinct(F.flatten(F.collect_list(a))))  # noqa: E731
    detail = {r["source_file"]: r for r in labelled.where(F.col("source_file").isin(*bad)).groupBy("source_file").agg(
        union(F.array_except(keys, expected)).alias("extra"), union(F.array_except(expected, keys)).alias("missing")).collect()}
    msgs = []
    for f in bad:
        extra, missing = detail[f]["extra"], detail[f]["missing"]
        msgs.append(_drift_message(f, extra, missing) if extra or missing else
                    f"raw file {f}: every row has a different number of fields than its header {RAW_FIELDS}")
    raise SchemaDriftError("raw files with the wrong columns in every row: " + "; ".join(msgs))
