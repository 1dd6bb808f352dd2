"""Clean raw interaction logs in Spark: every raw row ends clean, quarantined with one reason code,
or counted as a removed duplicate, and the three add up to the rows counted in the files themselves.

Raw rows are read as strings (raw.py), so that a quarantined row keeps every field exactly as it
arrived, then labelled with one `F.when` chain.
"""
from __future__ import annotations

import logging

import pandas as pd

from genre_lib.config.settings import PipelineConfig
from genre_lib.datasets.source import SchemaDriftError, source_for
from genre_lib.lake.raw import RAW_FIELDS, count_raw, drift_message, quarantine_raw, read_raw
from genre_lib.lake.storage import ATTEMPT
from genre_lib.lake.tables import schema

log = logging.getLogger(__name__)

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
def run(ctx) -> dict:
    """Clean tonight's raw days into interactions_clean / interactions_quarantine (one partition
    per raw day) and the catalogue into items_clean; returns run totals for MLflow."""
    from pyspark.sql import functions as F

    spark, cfg, lake, run_date, manifest = ctx.spark, ctx.cfg, ctx.lake, ctx.run_date, ctx.manifest()
    ds = run_date.isoformat()
    source = source_for(cfg)
    items, item_stats = normalise_items(source.items())
    lake.write_pandas("items_clean", ds, items, {**manifest, **item_stats})

    src = source.raw_files(run_date, lake.committed("interactions_clean"))
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
            lake.spark_write(table, frame.select(*schema(table).names, "ds"), staged[table], partition_by="ds")
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
            parts[table] = folder if folder.rsplit("/", 1)[-1].startswith(ATTEMPT) else lake.adopt(table, day, folder)
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
        msgs.append(drift_message(f, extra, missing) if extra or missing else
                    f"raw file {f}: every row has a different number of fields than its header {RAW_FIELDS}")
    raise SchemaDriftError("raw files with the wrong columns in every row: " + "; ".join(msgs))
