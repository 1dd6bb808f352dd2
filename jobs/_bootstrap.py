"""Puts the repo root on sys.path, so jobs run as `python jobs/X.py` and `spark-submit jobs/X.py`."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
