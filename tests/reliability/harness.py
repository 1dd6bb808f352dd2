"""Running the pipeline's jobs as real processes on a tiny synthetic lake, killing them, and
snapshotting their tables for comparison."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import STAGES, outputs, schema

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = {stage: outputs(stage) for stage in STAGES}  # the writer stages declared in tables.py
TINY = ["data.synthetic.users=40", "data.synthetic.items=60", "data.synthetic.interactions=1500",
        "data.synthetic.days=3", "spark.shuffle_partitions=2", "spark.master=local[2]", "classifier.epochs=5",
        "encoder.max_length=32"]


class Workspace:
    def __init__(self, tmp: Path, extra: list[str] | None = None, config: str = "configs/default.yaml"):
        self.tmp, self.config = tmp, config
        self.overrides = [f"lake.root={tmp}/lake", f"data.path={tmp}/data", f"publish.sqlite_path={tmp}/serving.db",
                          *TINY, *(extra or [])]
        self.lake = Lake(str(tmp / "lake"))
        self.env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "HF_HUB_OFFLINE": "1",
                    "PYSPARK_PYTHON": sys.executable, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def args(self, run_date: str, run_id: str) -> list[str]:
        return ["--config", self.config, "--run-date", run_date, "--run-id", run_id,
                *[a for o in self.overrides for a in ("--set", o)]]

    def generate(self, *extra: str) -> None:
        sets = [a for o in [*self.overrides, *extra] for a in ("--set", o)]
        subprocess.run([sys.executable, "-m", "genre_lib.datasets", "--force", *sets], cwd=ROOT, env=self.env,
                       check=True, capture_output=True)

    def start(self, stage: str, run_date: str, run_id: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, f"jobs/{stage}.py", *self.args(run_date, run_id)], cwd=ROOT,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)  # own process group: kill -9 reaches the JVM too

    def run_dying_at(self, stage: str, run_date: str, run_id: str, point: str) -> int:
        """Run a stage that SIGKILLs itself at a commit's fault point (genre_lib.lake.faults.fault_point);
        the rest of its process group (Spark's JVM) is killed after it. Returns the exit code."""
        p = self.start(stage, run_date, run_id, env={"GENRE_FAULT_AT": point})
        p.communicate(timeout=600)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return p.returncode

    def run(self, stage: str, run_date: str, run_id: str, timeout: float = 600) -> float:
        t0 = time.time()
        p = self.start(stage, run_date, run_id)
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"{stage} failed:\n{out.decode()[-4000:]}"
        return time.time() - t0

    def run_killed(self, stage: str, run_date: str, run_id: str, after_s: float) -> bool:
        """Start a stage and SIGKILL its whole process group after `after_s`; True if it was killed."""
        p = self.start(stage, run_date, run_id)
        try:
            p.wait(timeout=after_s)
            return False
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return True

    def snapshot(self, stage: str, ds: str) -> dict:
        return {t: read_table(self.lake, t, ds) for t in OUTPUTS[stage]}


def read_table(lake: Lake, table: str, ds: str):
    if table == "publish_log":  # the gate's verdict on the night's numbers (versions count up per publish)
        if ds not in lake.committed(table):
            return None
        d = lake.read_json(table, ds, "decision.json")["decision"]
        return {k: d[k] for k in ("publish", "metric", "baseline", "metric_name", "model")}
    if table == "evaluation":
        return lake.read_json(table, ds, "metrics.json")["models"] if ds in lake.committed(table) else None
    if ds not in lake.committed(table):
        return None
    df = lake.read_pandas(table, ds)
    assert lake.manifest(table, ds)["row_count"] == len(df)
    keys = [c for c in schema(table).names if df[c].map(lambda v: isinstance(v, (list, np.ndarray))).sum() == 0]
    return df.sort_values(keys).reset_index(drop=True)


def assert_same(a, b, what: str) -> None:
    if isinstance(a, pd.DataFrame):
        assert isinstance(b, pd.DataFrame), what
        a, b = a.drop(columns=["run_id"], errors="ignore"), b.drop(columns=["run_id"], errors="ignore")  # provenance
        vec = [c for c in a.columns if a[c].map(lambda v: isinstance(v, (list, np.ndarray))).any()]
        pd.testing.assert_frame_equal(a.drop(columns=vec), b.drop(columns=vec), check_exact=False, rtol=1e-6, obj=what)
        for c in vec:
            for x, y in zip(a[c], b[c]):
                x, y = np.asarray(x), np.asarray(y)
                if x.dtype.kind == "f":
                    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"{what}: {c}")
                else:
                    assert x.tolist() == y.tolist(), f"{what}: {c}"
    else:  # metrics.json: Spark may sum in another order, so numbers agree to 1e-9, not bitwise
        assert _rounded(a) == _rounded(b), what


def _rounded(x):
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return round(x, 9) if isinstance(x, float) else x


def visible_partitions_complete(lake: Lake, table: str) -> None:
    """Every committed partition is whole: its manifest names files that all exist and hold its rows
    (a folder without a manifest is invisible to readers)."""
    for ds in lake.committed(table):
        man = lake.manifest(table, ds)
        missing = [f for f in lake.files(table, ds, man) if not Path(f).is_file()]
        assert not missing, f"{table} ds={ds}: the manifest names missing files {missing}"
        if table not in ("evaluation", "publish_log"):
            assert len(lake.read_pandas(table, ds)) == man["row_count"], f"{table} ds={ds}: rows != manifest"
