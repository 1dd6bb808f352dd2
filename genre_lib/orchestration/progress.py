"""Progress in the task log at a steady interval (env GENRE_PROGRESS_S, default 30 s): a heartbeat
thread for every job (elapsed time and memory, so a long stage such as recommend shows it is alive
without touching its code), and a throttle for loops that can say more (training epochs)."""
from __future__ import annotations

import logging
import os
import resource
import threading
import time
from typing import Optional


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
    """A daemon thread that logs `<what>: running <s> s, peak rss of the Python process <MiB>`
    every interval while the `with` block runs."""

    def __init__(self, log: logging.Logger, what: str, every_s: Optional[float] = None):
        self.log, self.what = log, what
        self.every_s = interval_s() if every_s is None else every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="genre-heartbeat", daemon=True)
        self._t0 = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
            self.log.info("%s: running %.0f s, peak rss of the Python process %.0f MiB", self.what,
                          time.monotonic() - self._t0, rss_mib)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
