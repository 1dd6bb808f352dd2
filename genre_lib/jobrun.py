"""What every job shares: arguments, config validation, the lake, the MLflow child run, timing.

A job is `main(STAGE, work)` where `work(ctx)` does the stage through genre_lib and returns the
metrics to log. Config and run date are validated before any Spark session or model is created.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from genre_lib.config import ConfigError, PipelineConfig, load_config, parse_run_date
from genre_lib.tables import Lake

log = logging.getLogger("genre")


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
    def spark(self):
        if self._spark is None:
            from genre_lib.spark import get_spark
            self._spark = get_spark(self.cfg, self.stage)
        return self._spark

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


def main(stage: str, work: Callable[[JobContext], dict], argv: Optional[list[str]] = None,
         preflight: Optional[Callable[[PipelineConfig], None]] = None) -> int:
    """Run a stage; exit code 2, and nothing started, when the arguments or inputs are wrong."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ctx = build_context(stage, argv)
        if preflight:
            preflight(ctx.cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from genre_lib.tracking import log_metrics, stage_run

    t0 = time.time()
    try:
        with stage_run(ctx.cfg, stage, ctx.run_id, ctx.ds):
            metrics = work(ctx) or {}
            metrics["seconds"] = time.time() - t0
            log_metrics(metrics)
            log.info("%s %s done: %s", stage, ctx.ds, {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    finally:
        if ctx._spark is not None:
            ctx._spark.stop()
    return 0
