"""Spark session and the cast of Spark frames to the table contract."""
from __future__ import annotations

import os
import sys

import pyarrow as pa

from genre_lib.config import PipelineConfig

_ARROW_TO_SPARK = {
    pa.string(): "string", pa.float64(): "double", pa.float32(): "float", pa.int32(): "int",
    pa.int64(): "bigint", pa.timestamp("us", tz="UTC"): "timestamp",
    pa.list_(pa.string()): "array<string>", pa.list_(pa.float32()): "array<float>",
}


def get_spark(cfg: PipelineConfig, app: str):
    """A SparkSession for a job; under spark-submit the master comes from the submit command."""
    from pyspark.sql import SparkSession

    # Workers must use this interpreter (the venv), not whatever python is first on their PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(f"genre-{app}")
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    if "spark.master" not in _submitted_conf():
        builder = builder.master(cfg.spark.master).config("spark.driver.memory", cfg.spark.driver_memory)
    return (builder
            .config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.log.level", "WARN")
            .config("spark.sql.sources.partitionOverwriteMode", "static")
            .getOrCreate())


def _submitted_conf() -> set[str]:
    """Settings that spark-submit already fixed: it launches the Python driver with a gateway port,
    and its --master must win over the profile's default."""
    return {"spark.master"} if "PYSPARK_GATEWAY_PORT" in os.environ else set()


def to_contract(sdf, table: str, keep: tuple[str, ...] = ()):
    """Select and cast a frame's columns to the table's schema, in contract order."""
    from pyspark.sql import functions as F
    from genre_lib.tables import SCHEMAS

    schema = SCHEMAS[table][1]
    missing = [f.name for f in schema if f.name not in sdf.columns]
    if missing:
        raise ValueError(f"{table}: frame lacks columns {missing}")
    return sdf.select(*[F.col(f.name).cast(_ARROW_TO_SPARK[f.type]).alias(f.name) for f in schema], *keep)
