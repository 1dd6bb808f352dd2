"""What every job shares: arguments, config validation, the lake, the MLflow child run, timing.

A job is `main(stage)`: its declared module's (lake/tables.py, STAGE_SPECS) `run(ctx) -> metrics`
does the work, its lake I/O included. Config, run date and the preflight checks pass before the module (and with it
Spark or torch) is even imported.
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import datetime as dt
import importlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

from genre_lib.config.settings import ConfigError, PipelineConfig, load_config, parse_run_date, resolve_path
from genre_lib.lake.reads import recording_reads
from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import STAGE_SPECS
from genre_lib.orchestration.pipeline import preflight

log = logging.getLogger("genre")
_current: contextvars.ContextVar[Optional["JobContext"]] = contextvars.ContextVar("genre_job", default=None)


@dataclass
class JobContext:
    stage: str
    cfg: PipelineConfig
    run_date: dt.date
    run_id: str
    lake: Lake
    _spark: object = field(default=None, repr=False)

    @property
    def ds(self) -> str:
        return self.run_date.isoformat()

    @property
    def scratch_lake(self) -> Lake:
        """Where a stage hands files to Spark: `lake.scratch_root`, else the lake."""
        root = self.cfg.lake.scratch_root
        return Lake(resolve_path(root)) if root else self.lake

    @property
    def spark(self):
        if self._spark is None:
            from genre_lib.lake.spark import get_spark
            self._spark = get_spark(self.cfg, self.stage)
        return self._spark

    @classmethod
    def of(cls, stage: str, cfg: PipelineConfig, run_date: dt.date | str, run_id: str = "manual",
           spark=None) -> "JobContext":
        """A context outside a job (tests, benches): the profile's lake, an optional SparkSession."""
        return cls(stage=stage, cfg=cfg, run_date=parse_run_date(str(run_date)), run_id=run_id,
                   lake=Lake(cfg.lake_root), _spark=spark)

    def manifest(self, **extra) -> dict:
        """Manifest fields every partition written by this run carries."""
        return {"run_id": self.run_id, "config_hash": self.cfg.hash(), "stage": self.stage, **extra}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="configs/default.yaml", help="YAML profile")
    p.add_argument("--run-date", required=True, help="YYYY-MM-DD")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set recommend.top_n=50 (repeatable)")
    p.add_argument("--run-id", default=None, help="pipeline run id (the Airflow run_id); default: manual__<time>")
    return p.parse_args(argv)


def build_context(stage: str, argv: Optional[list[str]] = None) -> JobContext:
    args = parse_args(argv)
    run_date = parse_run_date(args.run_date)
    cfg = load_config(args.config, args.overrides)
    run_id = args.run_id or f"manual__{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    return JobContext(stage=stage, cfg=cfg, run_date=run_date, run_id=run_id, lake=Lake(cfg.lake_root))


def current() -> Optional[JobContext]:
    """The context of the job running in this process (None outside `main`): for helpers called
    deep inside a stage that need the night's lake, e.g. the evaluation's HTML report."""
    return _current.get()


@contextlib.contextmanager
def _running(ctx: JobContext) -> Iterator[None]:
    token = _current.set(ctx)
    try:
        yield
    finally:
        _current.reset(token)


def fail_if_asked(stage: str, ds: str) -> None:
    """Test hook: GENRE_FAIL_STAGE=<stage>[:how][@YYYY-MM-DD][,...] makes that stage (on that night
    only, when a date is given) raise once its MLflow run is open; how: oom-python or oom-jvm (run out
    of memory instead), sleep-<s> (take that many seconds longer, then go on: a night that overruns)."""
    for item in filter(None, os.environ.get("GENRE_FAIL_STAGE", "").split(",")):
        spec, _, night = item.strip().partition("@")
        name, _, how = spec.partition(":")
        if name == stage and night in ("", ds) and how.startswith("sleep-"):
            log.warning("GENRE_FAIL_STAGE=%s: %s %s sleeps %s s on request", item, stage, ds, how[6:])
            time.sleep(float(how[6:]))
            continue
        if name == stage and night in ("", ds):
            if how == "oom-python":
                hog = [bytearray(1 << 30) for _ in range(1 << 10)]  # noqa: F841
            if how == "oom-jvm":
                ctx = current()
                ctx.spark.range(0, 1 << 26).selectExpr("id", "repeat('x', 200) AS pad").collect()
            raise RuntimeError(f"GENRE_FAIL_STAGE={item}: {stage} {ds} fails on request")


def main(stage: str, argv: Optional[list[str]] = None) -> int:
    """Run the stage module's `run(ctx)`; exit code 2, and nothing started, when the arguments or
    inputs are wrong."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ctx = build_context(stage, argv)
        preflight(ctx.cfg, stage)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from genre_lib.orchestration.progress import Heartbeat
    from genre_lib.orchestration.tracking import log_inputs, log_metrics, stage_run

    t0 = time.time()
    try:
        with stage_run(ctx.cfg, stage, ctx.run_id, ctx.ds), recording_reads() as reads, _running(ctx), \
                Heartbeat(log, f"{stage} {ctx.ds}", spark=lambda: ctx._spark):
            try:
                fail_if_asked(stage, ctx.ds)
                metrics = importlib.import_module(STAGE_SPECS[stage].module).run(ctx) or {}
            except BaseException:  # what a failed stage read is part of its story too
                with contextlib.suppress(Exception):
                    log_inputs(reads)
                raise
            log_inputs(reads)
            metrics["seconds"] = time.time() - t0
            log_metrics(metrics)
            log.info("%s %s done: %s", stage, ctx.ds, {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    except MemoryError:
        print(f"error: {stage} {ctx.ds} ran out of memory in its Python process (peak RSS {peak_rss_mib()} MiB): "
              "give the task more memory, or lower recommend.execution.block_users", file=sys.stderr)
        return 3
    except Exception as e:
        if not _jvm_gone(e):
            raise
        print(f"error: {stage} {ctx.ds}: the Spark driver JVM is gone ({type(e).__name__}); a "
              "java.lang.OutOfMemoryError above means its heap was too small: raise spark.driver_memory "
              "(or spark-submit --driver-memory)", file=sys.stderr)
        return 3
    finally:
        if ctx._spark is not None:
            with contextlib.suppress(Exception):  # a dead JVM can't be stopped, only left
                ctx._spark.stop()
    return 0


def _jvm_gone(e: BaseException) -> bool:
    """Py4J lost its JVM: what every Spark call raises after the driver exited on OutOfMemoryError."""
    while e is not None:
        if type(e).__module__.startswith("py4j") and "Answer from Java side is empty" in str(e) \
                or isinstance(e, ConnectionRefusedError) or type(e).__name__ == "Py4JNetworkError":
            return True
        e = e.__cause__ or e.__context__
    return False


def peak_rss_mib() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
