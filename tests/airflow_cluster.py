"""A throw-away Airflow for tests that need the real scheduler: its own AIRFLOW_HOME and SQLite DB,
the api-server on a free 127.0.0.1 port (LocalExecutor workers reach the execution API there), the
scheduler and, when asked, the dag-processor; every process it started is stopped at the end."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.synthetic.users=40", "data.synthetic.items=60", "data.synthetic.interactions=1500",
        "data.synthetic.days=3", "spark.shuffle_partitions=2", "classifier.epochs=5", "encoder.max_length=32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JsonInbox:
    """An HTTP server on 127.0.0.1 keeping the JSON bodies POSTed to it: the alerts of an http
    notifier connection (`connection()`, for AIRFLOW_CONN_<ID>)."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, HTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def connection(self, endpoint: str = "alert") -> str:
        return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": self.server.server_port,
                           "extra": {"endpoint": endpoint}})

    def stop(self) -> None:
        self.server.shutdown()


def airflow_env(tmp: Path, **extra: str) -> dict:
    """The Makefile's exports, pointed into `tmp` (Airflow home, SQLite DB, MLflow store)."""
    venv_bin = str(Path(sys.executable).parent)
    port = free_port()
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "AIRFLOW_HOME": str(tmp / "airflow"),
            "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp}/airflow/airflow.db",
            "GENRE_AIRFLOW_DB_CONN": f"sqlite:///{tmp}/airflow/airflow.db",  # as the Makefile: maintenance's db clean
            "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable, "GENRE_ALLOWED_ROOTS": str(tmp),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "SPARK_LOCAL_IP": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),  # shared by api-server and scheduler
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),  # not 8793: a running `make airflow`
            "PYTHONPATH": str(ROOT),  # as the Makefile: the triggerer imports the deadline callback from genre_lib
            **extra}
# A test that unpauses genre_nightly must pass AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False": else the
# cron schedule adds a full-size night on the default lake. That switch also stops the scheduler from
# creating asset-triggered runs, so the consumer is tested with genre_nightly left paused instead.


def overrides(tmp: Path) -> list[str]:
    return [f"lake.root={tmp}/lake", f"data.path={tmp}/data", f"publish.sqlite_path={tmp}/serving/serving.db", *TINY]


def generate(tmp: Path, env: dict) -> None:
    sets = [a for o in overrides(tmp) for a in ("--set", o)]
    subprocess.run([sys.executable, "-m", "genre_lib.datasets", *sets], cwd=ROOT, env=env, check=True,
                   capture_output=True)


def airflow(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["airflow", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{(r.stdout + r.stderr)[-4000:]}")
    return r


def prepare(env: dict, unpause: tuple[str, ...] = (), pools: bool = True) -> None:
    """Migrate, create the pools, parse the DAG files into the DB, unpause the given DAGs."""
    airflow(env, "db", "migrate")
    if pools:  # the scheduler leaves a task of a missing pool unscheduled
        subprocess.run([sys.executable, "-m", "genre_lib.orchestration.dag_support", "pools"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
    airflow(env, "dags", "reserialize")
    for dag_id in unpause:
        airflow(env, "dags", "unpause", dag_id)


def sql(env: dict, query: str, args: tuple = ()) -> list[tuple]:
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db, timeout=30) as con:
        return con.execute(query, args).fetchall()


class Cluster:
    def __init__(self, env: dict, logdir: Path):
        self.env, self.logdir, self.procs = env, logdir, {}
        logdir.mkdir(parents=True, exist_ok=True)

    def start(self, *components: str) -> "Cluster":
        for name in components:
            out = open(self.logdir / f"{name}.log", "w")
            self.procs[name] = subprocess.Popen(["airflow", *name.split()], cwd=ROOT, env=self.env, stdout=out,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        if "api-server" in components:
            self.wait_http(f"{self.env['AIRFLOW__API__BASE_URL']}/api/v2/monitor/health", 240)
        return self

    def alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.logdir / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"airflow {name} exited with {p.returncode}:\n{tail}")

    def wait_http(self, url: str, timeout: float) -> None:
        t0 = time.time()
        while True:
            self.alive()
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.time() - t0 > timeout:
                raise TimeoutError(f"{url} not up after {timeout}s")
            time.sleep(2)

    def wait_runs(self, dag_id: str, count: int, timeout: float, run_type: str | None = None) -> list[tuple]:
        """Wait until `count` runs of dag_id (of run_type) have finished; (run_id, state, logical_date,
        start_date, end_date, run_type) of every run, oldest logical date first."""
        t0 = time.time()
        q = ("SELECT run_id, state, logical_date, start_date, end_date, run_type FROM dag_run WHERE dag_id=?"
             + (" AND run_type=?" if run_type else "") + " ORDER BY logical_date, id")
        args = (dag_id, run_type) if run_type else (dag_id,)
        while True:
            self.alive()
            runs = sql(self.env, q, args)
            if sum(r[1] in ("success", "failed") for r in runs) >= count:
                return runs
            if time.time() - t0 > timeout:
                raise TimeoutError(f"{dag_id}: {runs} after {timeout}s; logs in {self.logdir}")
            time.sleep(3)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def xcom_value(env: dict, dag_id: str, run_id: str, task_id: str):
    rows = sql(env, "SELECT value FROM xcom WHERE dag_id=? AND run_id=? AND task_id=? AND key='return_value'",
               (dag_id, run_id, task_id))
    if not rows:
        return None
    value = rows[0][0]
    return json.loads(value) if isinstance(value, (str, bytes)) else value
