"""A Spark standalone cluster on this machine: a master and its workers as their own JVMs on
127.0.0.1 and free ports, for the checks that run the jobs on a real cluster (tests/test_standalone.py,
bench/prod_check.py). `state(ui)` is the master's JSON: its workers and its applications."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

BIN = Path(sys.executable).parent  # spark-class and spark-submit of the pyspark install in this venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state(ui: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
        return json.load(r)


@dataclass
class Cluster:
    url: str  # spark://127.0.0.1:<port>, what spark-submit --master and the spark_default connection take
    port: int
    ui: int

    def apps(self) -> dict:
        """name -> the master's record of each application (running ones, else the latest finished)."""
        s = state(self.ui)
        return {a["name"]: a for a in [*s.get("completedapps", []), *s.get("activeapps", [])]}


@contextmanager
def cluster(workdir: Path, workers: int = 1, cores: int = 2, memory: str = "2g", timeout: float = 180,
            start: Optional[Callable[[str, list[str]], subprocess.Popen]] = None) -> Iterator[Cluster]:
    """Start a master and `workers` workers (`cores` and `memory` each), wait until every worker has
    registered, yield the Cluster, stop them. `start(name, cmd)` launches a process whose life its
    caller manages (prod_check's process groups); without it they run here and stop on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    spark_class = BIN / "spark-class"
    if not spark_class.exists():
        raise FileNotFoundError(f"{spark_class} missing: the pyspark install is incomplete")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "SPARK_LOG_DIR": str(workdir),
           "SPARK_LOCAL_IP": "127.0.0.1"}
    own: list[subprocess.Popen] = []

    def launch(name: str, cmd: list[str]) -> subprocess.Popen:
        if start is not None:
            return start(name, cmd)
        p = subprocess.Popen(cmd, env=env, stdout=open(workdir / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        own.append(p)
        return p

    c = Cluster(f"spark://127.0.0.1:{(port := free_port())}", port, free_port())
    try:
        master = launch("spark-master", [str(spark_class), "org.apache.spark.deploy.master.Master", "--host",
                                         "127.0.0.1", "--port", str(c.port), "--webui-port", str(c.ui)])
        deadline = time.time() + timeout  # a loaded machine starts JVMs slowly
        while True:
            try:
                state(c.ui)
                break
            except OSError:
                if master.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"Spark master did not start; see {workdir}")
                time.sleep(1)
        for w in range(workers):
            launch(f"spark-worker-{w + 1}", [str(spark_class), "org.apache.spark.deploy.worker.Worker", c.url,
                                             "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                                             "--webui-port", str(free_port()), "--work-dir", str(workdir / f"work{w + 1}")])
        while state(c.ui).get("aliveworkers", 0) < workers:
            if time.time() > deadline:
                raise RuntimeError(f"{workers} Spark workers did not register within {timeout:.0f} s; see {workdir}")
            time.sleep(1)
        yield c
    finally:
        for p in reversed(own):
            p.terminate()
        for p in own:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def canonical(df, places: int = 9):
    """A table as a frame in one row order, for comparing a cluster run with a local one: without the
    run id (the runs differ in it), list cells as text, rows ordered on floats rounded to `places`
    (sums may differ in their last bits with the order in which a shuffle delivers rows)."""
    df = df.drop(columns="run_id", errors="ignore")
    lists = [c for c in df if df[c].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any()]
    df = df.astype({c: str for c in lists})
    key = df.round({c: places for c in df.select_dtypes("float").columns})
    return df.loc[key.sort_values(list(df.columns)).index].reset_index(drop=True)
