"""Progress in the task log at a steady interval (env GENRE_PROGRESS_S, default 30 s): a heartbeat
thread for every job that says how far it is: elapsed time and memory; what the stage reported
(`report`: user blocks done of n, users, rows) with its rate and an estimate of what is left; and in a
Spark stage, the running Spark stages' tasks done of total. A throttle for loops that log more
themselves (training epochs)."""
from __future__ import annotations

import logging
import os
import resource
import threading
import time
from typing import Callable, Optional

_done: dict = {}  # the running job's last report: what, done, total, counts, first/last time


def report(what: str, done: int, total: int, **counts) -> None:
    """A long loop's progress: `done` of `total` `what` (e.g. user blocks), with running counts."""
    now = time.monotonic()
    start = _done.get("t0", now) if _done.get("what") == what else now
    _done.clear()
    _done.update(what=what, done=done, total=total, counts=counts, t0=start, t=now)


def describe(now: Optional[float] = None) -> str:
    """The last report with its rate and an estimate of what is left ("" when nothing was reported)."""
    if not _done:
        return ""
    now = time.monotonic() if now is None else now
    d, n, spent = _done["done"], _done["total"], max(now - _done["t0"], 1e-9)
    counts = ", ".join(f"{v:,} {k}" for k, v in _done["counts"].items())
    text = f"{_done['what']} {d} of {n}" + (f" ({counts})" if counts else "")
    if 0 < d < n:
        rate = d / spent
        text += f", {rate * 60:.2f}/min, about {(n - d) / rate:.0f} s left"
    return text


def spark_status(spark) -> str:
    """The running Spark stages of a session: tasks done of total each ("" when none)."""
    if spark is None:
        return ""
    try:
        tracker = spark.sparkContext.statusTracker()
        parts = []
        for sid in tracker.getActiveStageIds():
            info = tracker.getStageInfo(sid)
            if info is not None:
                parts.append(f"stage {sid} ({info.name.split(' at ')[0]}): tasks {info.numCompletedTasks} of "
                             f"{info.numTasks}, {info.numActiveTasks} running")
        return "Spark " + "; ".join(parts) if parts else ""
    except Exception:  # a session stopping under us: say nothing rather than fail the job
        return ""


def interval_s() -> float:
    return max(float(os.environ.get("GENRE_PROGRESS_S", "30")), 0.5)


class Throttle:
    """`due()` is true on the first call and then once per interval."""

    def __init__(self, every_s: Optional[float] = None):
        self.every_s = interval_s() if every_s is None else every_s
        self._last: Optional[float] = None

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is None or now - self._last >= self.every_s:
            self._last = now
            return True
        return False


class Heartbeat:
    """A daemon thread that logs `<what>: running <s> s, peak rss <MiB>; <report>; <Spark tasks>`
    every interval while the `with` block runs. `spark`: the job's session, or None, when asked."""

    def __init__(self, log: logging.Logger, what: str, every_s: Optional[float] = None,
                 spark: Callable[[], object] = lambda: None):
        self.log, self.what, self.spark = log, what, spark
        self.every_s = interval_s() if every_s is None else every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="genre-heartbeat", daemon=True)
        self._t0 = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
            said = "; ".join(filter(None, [describe(), spark_status(self.spark())]))
            self.log.info("%s: running %.0f s, peak rss of the Python process %.0f MiB%s", self.what,
                          time.monotonic() - self._t0, rss_mib, f"; {said}" if said else "")

    def __enter__(self) -> "Heartbeat":
        _done.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
