"""The Spark session of a job, and a frame cast to a table's contract for Spark's writes."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow as pa

from genre_lib.config.settings import PipelineConfig
from genre_lib.lake.tables import schema


# A driver JVM out of heap exits at once (the Python side then fails) instead of limping on and
# hanging the task: local sessions get it here, spark-submit through SUBMIT_CONF (the DAG's).
DRIVER_JAVA_OPTIONS = "-XX:+ExitOnOutOfMemoryError"
SUBMIT_CONF = {"spark.log.level": "WARN", "spark.driver.extraJavaOptions": DRIVER_JAVA_OPTIONS}


def get_spark(cfg: PipelineConfig, app: str):
    """A SparkSession for a job; under spark-submit the master comes from the submit command."""
    from pyspark.sql import SparkSession

    # Workers must use this interpreter (the venv), not whatever python is first on their PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(f"genre-{app}")
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    if "spark.master" not in _submitted_conf():
        opts = " ".join(filter(None, [DRIVER_JAVA_OPTIONS, cfg.spark.conf.get("spark.driver.extraJavaOptions")]))
        builder = (builder.master(cfg.spark.master).config("spark.driver.memory", cfg.spark.driver_memory)
                   .config("spark.driver.extraJavaOptions", opts))
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


def ship_package(spark) -> None:
    """Make genre_lib importable on executors (a cluster has no checkout; local workers do not see
    the driver's sys.path edits). Zipped once per SparkContext."""
    import tempfile
    import zipfile

    sc = spark.sparkContext
    if getattr(sc, "_genre_lib_shipped", False):
        return
    pkg = Path(__file__).resolve().parents[1]  # genre_lib/
    zpath = Path(tempfile.mkdtemp(prefix="genre_lib-")) / "genre_lib.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in pkg.rglob("*.py"):
            z.write(f, f.relative_to(pkg.parent).as_posix())
    sc.addPyFile(str(zpath))
    sc._genre_lib_shipped = True


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
