"""Fault injection at the delicate moments of a commit, which random kill times rarely hit (the
reliability suite, the soak): GENRE_FAULT_AT=<name> makes every process that reaches fault point
<name> die by SIGKILL; GENRE_FAULT_FILE=<path> does it once, for the first process that reaches the
point the file names and renames the file away (atomic: one process wins), so the retry runs through."""
from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    armed = os.environ.get("GENRE_FAULT_FILE") or ""
    if os.environ.get("GENRE_FAULT_AT") == name or (os.path.isfile(armed) and _take(armed, name)):
        os.kill(os.getpid(), signal.SIGKILL)


def _take(path: str, name: str) -> bool:
    try:
        with open(path) as f:
            if f.read().strip() != name:
                return False
        os.rename(path, f"{path}.fired")
        return True
    except OSError:
        return False
