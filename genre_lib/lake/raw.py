"""Reading raw interaction files into one string-typed Spark frame (JSON Lines, CSV, MovieLens TSV
as text lines; Parquet by its columns), and counting their rows straight from the files."""
from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass

import pyarrow.parquet as pq

from genre_lib.datasets.source import DAY, RawFiles, SchemaDriftError

RAW_FIELDS = ["user_id", "item_id", "event", "rating", "ts"]

# A text line that is blank or repeats its file's header is not a row: it carries no fields. Such
# lines are dropped while reading but counted (`blank_lines`, `header_lines` in the manifest), so
# every line read is accounted for: lines = raw_rows + blank_lines + header_lines.
_ML_RENAME = {"userId": "user_id", "movieId": "item_id", "timestamp": "ts"}


@dataclass
class _TextSource:
    files: list[str]
    header_lines: tuple[str, ...]  # the exact header texts of these files; () when headerless
    parse: object  # lines frame -> frame of read_raw's columns


def _text_sources(src: RawFiles) -> list[_TextSource]:
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


def read_raw(spark, src: RawFiles, run_date: dt.date):
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
    day = F.regexp_extract("source_file", DAY.pattern, 1)
    if src.snapshot:
        return df.withColumn("ds", F.lit(run_date.isoformat()))
    return df.withColumn("ds", F.when(day == "", F.lit(run_date.isoformat())).otherwise(day))


def count_raw(spark, src: RawFiles, run_date: dt.date) -> dict[str, dict[str, int]]:
    """Per raw day: `raw_rows`, `blank_lines`, `header_lines`, counted straight from the files (a
    scan of the text lines; Parquet footers) and not from the parsed or labelled frame, so that the
    reconciliation catches a row lost or doubled anywhere after reading."""
    from pyspark.sql import functions as F

    per_day: dict[str, dict[str, int]] = {d: {"read": 0, "blank_lines": 0, "header_lines": 0} for d in src.days}

    def add(path: str, read: int, blank: int = 0, header: int = 0) -> None:
        m = None if src.snapshot else DAY.search(path)  # the same rule as read_raw's `ds`
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


def drift_message(path: str, extra, missing) -> str:
    return (f"raw file {path}: wrong columns (extra: {sorted(extra) or 'none'}, missing: {sorted(missing) or 'none'}); "
            f"expected {RAW_FIELDS}")


def _check_columns(path: str, columns) -> None:
    extra, missing = set(columns) - set(RAW_FIELDS), set(RAW_FIELDS) - set(columns)
    if extra or missing:
        raise SchemaDriftError(drift_message(path, extra, missing))


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
