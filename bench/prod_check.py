"""Production-profile check: one real `genre_nightly` run on Airflow (PostgreSQL metadata DB,
CeleryExecutor, Redis broker) tracked by an MLflow server on PostgreSQL, on tiny synthetic data.

    make prod-check                       # or: .venv/bin/python bench/prod_check.py [--fresh]

Loads configs/production.env, creates the two databases if missing, migrates Airflow, starts
`mlflow server`, a Spark standalone master with two workers (`spark_default` points at it),
`airflow api-server`, `airflow scheduler`, `airflow dag-processor` and `airflow celery worker` (all
bound to 127.0.0.1 on free ports), triggers one DAG run (recommend.execution.engine=spark) through the
scheduler, waits for it, checks every declared table committed, the MLflow parent run with one
FINISHED child run per stage (through the MLflow client against the server), every Spark stage as a
finished application of the master, and the Spark stages' tables equal to a local[*] rerun; then
stops every process it started. --fresh uses throw-away databases (dropped at the end) and a temporary state folder.
Exit code 0 only when every check passed; a JSON summary goes to <state>/prod-check.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from genre_lib.orchestration import standalone  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "genre_nightly"
SPARK_STAGES = ("clean_interactions", "genre_weights", "recommend", "evaluate")  # spark-submit tasks of the DAG
RUN_DATE = "2026-11-22"
# Same tiny profile as tests/test_dag.py.
TINY = ["data.synthetic.users=40", "data.synthetic.items=60", "data.synthetic.interactions=1500",
        "data.synthetic.days=3", "spark.shuffle_partitions=2", "classifier.epochs=5", "encoder.max_length=32"]


def log(msg: str) -> None:
    print(f"[prod-check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def services_reachable(env: dict | None = None) -> tuple[bool, str]:
    """(ok, reason): Postgres and Redis of the profile answer on their ports (Redis to PING)."""
    env = env or os.environ
    pg = (env.get("GENRE_PG_HOST", "127.0.0.1"), int(env.get("GENRE_PG_PORT", "5432")))
    r = urlparse(env.get("GENRE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    redis = (r.hostname or "127.0.0.1", r.port or 6379)
    if not reachable(*pg):
        return False, f"PostgreSQL not reachable at {pg[0]}:{pg[1]}"
    try:
        with socket.create_connection(redis, timeout=2) as s:
            s.sendall(b"PING\r\n")
            if not s.recv(64).startswith(b"+PONG"):
                return False, f"Redis at {redis[0]}:{redis[1]} did not answer PING"
    except OSError:
        return False, f"Redis not reachable at {redis[0]}:{redis[1]}"
    return True, "ok"


def load_profile(extra: dict) -> dict:
    """The environment after bash sources configs/production.env over os.environ + extra."""
    base = {**os.environ, "GENRE_ROOT": str(ROOT), **extra}
    out = subprocess.run(["bash", "-c", 'set -a; . "$GENRE_ROOT/configs/production.env"; set +a; env -0'],
                         env=base, check=True, capture_output=True).stdout
    env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    env.pop("_", None)
    return env


def pg_connect(env: dict, dbname: str = "postgres"):
    import psycopg2

    return psycopg2.connect(host=env["GENRE_PG_HOST"], port=int(env["GENRE_PG_PORT"]),
                            user=env["GENRE_PG_USER"], dbname=dbname, connect_timeout=5)


def ensure_databases(env: dict, names: list[str]) -> None:
    conn = pg_connect(env)
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in names:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
                log(f"created database {name}")
            else:
                log(f"database {name} exists")
    conn.close()


def drop_databases(env: dict, names: list[str]) -> None:
    conn = pg_connect(env)
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in names:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


class Processes:
    """Long-running servers, each in its own process group, stopped in reverse order."""

    def __init__(self, env: dict, logdir: Path):
        self.env, self.logdir, self.procs = env, logdir, []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        logf = open(self.logdir / f"{name}.log", "w")
        p = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, p, logf))
        log(f"started {name} (pid {p.pid})")
        return p

    def check_alive(self) -> None:
        for name, p, _ in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}; see {self.logdir / (name + '.log')}")

    def stop_all(self) -> None:
        for name, p, _ in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 30
        for name, p, logf in reversed(self.procs):
            try:
                p.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop on SIGTERM; killing its process group")
            try:  # children (gunicorn/uvicorn workers, Spark JVMs) live in the same group
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            logf.close()
        log(f"stopped {len(self.procs)} processes")


def wait_http(url: str, timeout: float, procs: Processes) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        procs.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    return time.time() - t0
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def run(cmd: list[str], env: dict, logfile: Path) -> None:
    with open(logfile, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({rc}):\n" + logfile.read_text()[-3000:])


def sql(env: dict, query: str, args: tuple = ()) -> list:
    conn = pg_connect(env, env["GENRE_AIRFLOW_DB"])
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


def verify_serving(run_id: str, lake_root: Path, overrides: list[str]) -> dict:
    """The night in the Redis store, its "ready" event on the stream, and the API serving a user's
    list from Redis in the table's order. The check's Redis keys are deleted afterwards."""
    import redis
    from fastapi.testclient import TestClient

    from genre_lib.config.settings import load_config
    from genre_lib.lake.storage import Lake
    from genre_lib.serve.api import create_app
    from genre_lib.serve.store import store_for

    cfg = load_config("configs/default.yaml", overrides)
    client = redis.Redis.from_url(cfg.publish.redis_url)
    try:
        stream = f"{cfg.publish.redis_prefix}:recommendations-ready"
        events = client.xrange(stream)
        assert len(events) == 1, f"{len(events)} events on {stream}"
        event = json.loads(events[0][1][b"data"])
        assert event["ds"] == RUN_DATE and event["run_id"] == run_id, event
        table = Lake(str(lake_root)).read_pandas("recommendations", RUN_DATE)
        user = sorted(table["user_id"].unique())[0]
        want = table[table["user_id"] == user].sort_values("rank")["item_id"].tolist()
        with TestClient(create_app(lambda: store_for(cfg))) as api:
            body = api.get(f"/v1/users/{user}/recommendations", params={"n": len(want)}).json()
        got = [i["item_id"] for i in body["items"]]
        assert body["personalised"] and got == want, (got, want)
        return {"redis_event": event, "served_user": user, "served_items": len(got)}
    finally:
        keys = list(client.scan_iter(f"{cfg.publish.redis_prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.unlink(*keys[i:i + 500])


def verify(env: dict, run_id: str, lake_root: Path, overrides: list[str]) -> dict:
    """Every declared table committed by the run, and its MLflow runs on the server."""
    sys.path.insert(0, str(ROOT))
    from genre_lib.config.settings import load_config
    from genre_lib.lake.storage import Lake
    from genre_lib.lake.tables import STAGES, TABLES

    tis = dict(sql(env, "SELECT task_id, state FROM task_instance WHERE dag_id=%s AND run_id=%s",
                   (DAG_ID, run_id)))
    assert len(tis) == len(STAGES) + 2 and set(tis.values()) == {"success"}, f"task states: {tis}"
    lake = Lake(str(lake_root))
    tables = {}
    for table in TABLES:
        assert RUN_DATE in lake.committed(table), f"{table} not committed for {RUN_DATE}"
        man = lake.manifest(table, RUN_DATE)
        assert man["run_id"] == run_id, f"{table}: manifest run_id {man['run_id']} != {run_id}"
        tables[table] = man["row_count"]
    assert len(tables) == len(TABLES), tables
    assert tables["recommendations"] > 0

    from mlflow.tracking import MlflowClient

    uri = env["MLFLOW_TRACKING_URI"]
    assert uri.startswith("http://"), uri
    client = MlflowClient(uri)
    cfg = load_config("configs/default.yaml", overrides)
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    assert exp is not None, f"experiment {cfg.mlflow.experiment} not on {uri}"
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.airflow_run_id = '{run_id}'")
    parents = [r for r in runs if r.data.tags.get("stage") == "pipeline"]
    children = [r for r in runs if r.data.tags.get("stage") != "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [(r.info.run_id, r.info.status) for r in parents]
    assert sorted(r.data.tags["stage"] for r in children) == sorted(STAGES), [r.data.tags.get("stage") for r in children]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in children), [(r.data.tags["stage"], r.info.status) for r in children]
    # artifacts are proxied by the server into GENRE_MLFLOW_ARTIFACTS
    arts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert "config.json" in arts, arts
    return {"tables": tables, "task_states": tis, "mlflow_parent_run": parents[0].info.run_id,
            "mlflow_children": {r.data.tags["stage"]: r.info.status for r in children}}


def verify_cluster(spark: standalone.Cluster) -> dict:
    """Every Spark stage of the night ran as an application of the standalone master, on its
    executors, and finished: stage -> application id."""
    apps = spark.apps()
    out = {}
    for stage in SPARK_STAGES:
        app = apps.get(f"genre-{stage}")
        assert app is not None, f"genre-{stage} is not an application of {spark.url}: {sorted(apps)}"
        assert app["state"] == "FINISHED" and app["cores"] > 0, f"genre-{stage} on {spark.url}: {app}"
        out[stage] = app["id"]
    return out


def verify_local_equal(env: dict, lake_root: Path, local_root: Path, overrides: list[str], logdir: Path) -> dict:
    """The night's Spark stages again in local[*] (recommend.execution.engine=local) on a copy of the cluster's
    lake: every table they write, and the evaluation's metrics, equal the cluster run's."""
    sys.path.insert(0, str(ROOT))
    from genre_lib.lake.storage import Lake
    from genre_lib.lake.tables import outputs

    shutil.rmtree(local_root, ignore_errors=True)
    shutil.copytree(lake_root, local_root)
    local_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{local_root}/mlflow.db"}
    sets = [a for o in [*overrides, f"lake.root={local_root}", "recommend.execution.engine=local", "spark.master=local[*]"]
            for a in ("--set", o)]
    for stage in SPARK_STAGES:
        run([env["GENRE_PYTHON"], str(ROOT / "jobs" / f"{stage}.py"), "--config", "configs/default.yaml",
             "--run-date", RUN_DATE, "--run-id", "prodcheck-local", *sets], local_env, logdir / f"local-{stage}.log")
    cluster, local = Lake(str(lake_root)), Lake(str(local_root))
    compared = {}
    for table in [t for stage in SPARK_STAGES for t in outputs(stage) if t != "evaluation"]:
        a, b = (standalone.canonical(lake.read_pandas(table, RUN_DATE), places=6) for lake in (cluster, local))
        assert len(a) == len(b) and list(a.columns) == list(b.columns), f"{table}: {a.shape} vs {b.shape}"
        floats = a.select_dtypes("float").columns
        assert a.drop(columns=floats).equals(b.drop(columns=floats)), f"{table}: cluster and local rows differ"
        assert np.allclose(a[floats].to_numpy(float), b[floats].to_numpy(float), rtol=1e-5, atol=1e-5,
                           equal_nan=True), f"{table}: cluster and local values differ"
        compared[table] = len(a)
    metrics = lambda lake: lake.read_json("evaluation", RUN_DATE, "metrics.json")  # noqa: E731
    m_cluster, m_local = metrics(cluster)["models"], metrics(local)["models"]
    assert m_cluster.keys() == m_local.keys() and all(
        np.isclose(m_cluster[n][k], v, rtol=1e-9) for n in m_local for k, v in m_local[n].items()), "metrics differ"
    compared["evaluation (models)"] = len(m_local)
    return compared


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fresh", action="store_true", help="throw-away databases and state folder")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for the DAG run")
    ap.add_argument("--keep-state", action="store_true", help="with --fresh: keep databases and folder")
    ap.add_argument("--state", help="state folder (Airflow home, lake, MLflow artifacts, logs); "
                                    "default GENRE_STATE of the profile, or a temporary one with --fresh")
    args = ap.parse_args(argv)

    ok, why = services_reachable(load_profile({}))
    if not ok:
        log(f"services missing: {why}")
        return 2

    tag = f"{os.getpid()}_{int(time.time())}"
    extra = {"GENRE_AIRFLOW_API_PORT": str(free_port()), "GENRE_MLFLOW_PORT": str(free_port()),
             # per check, never committed: scheduler and api-server must share it
             "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
             "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32)}
    temp_state = None
    if args.state:
        extra["GENRE_STATE"] = str(Path(args.state).resolve())
    elif args.fresh:
        temp_state = extra["GENRE_STATE"] = tempfile.mkdtemp(prefix="genre-prod-")
    if args.fresh:
        extra.update({"GENRE_AIRFLOW_DB": f"genre_airflow_{tag}", "GENRE_MLFLOW_DB": f"genre_mlflow_{tag}",
                      "GENRE_OPTUNA_DB": f"genre_optuna_{tag}",
                      "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"genre_{tag}"})
    env = load_profile(extra)
    # The check triggers its own run; the cron schedule must not add a full-size one.
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    # Spark runs local[*] here: keep its driver on loopback too (a cluster needs a reachable address).
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    state = Path(env["GENRE_STATE"])
    logdir = state / "logs"
    lake_root, data_root = state / "lake", state / "data"
    env["GENRE_ALLOWED_ROOTS"] = str(state)
    for d in (logdir, Path(env["AIRFLOW_HOME"]), Path(env["GENRE_MLFLOW_ARTIFACTS"])):
        d.mkdir(parents=True, exist_ok=True)
    if lake_root.exists():
        shutil.rmtree(lake_root)  # the lake is per check; the databases keep history
    dbs = [env["GENRE_AIRFLOW_DB"], env["GENRE_MLFLOW_DB"], env["GENRE_OPTUNA_DB"]]
    timings: dict[str, float] = {}
    summary: dict = {"state": str(state), "databases": dbs, "executor": env["AIRFLOW__CORE__EXECUTOR"],
                     "mode": "scheduler + api-server + dag-processor + celery worker"}
    procs = Processes(env, logdir)
    stack = contextlib.ExitStack()
    t_all = time.time()
    rc = 1

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        t = time.time()
        ensure_databases(env, dbs)
        run(["airflow", "db", "migrate"], env, logdir / "migrate.log")
        # the pools the DAG's tasks run in: a task of a missing pool is never scheduled
        run([sys.executable, "-m", "genre_lib.orchestration.dag_support", "pools"], env, logdir / "pools.log")
        timings["db_migrate_s"] = time.time() - t

        t = time.time()
        # the night is published to Redis (store and event stream) under a prefix of this check's own;
        # forced, because the gate's verdict on tiny data is not what this check is about
        overrides = [f"lake.root={lake_root}", f"data.path={data_root}", *TINY, "recommend.execution.engine=spark",
                     "publish.store=redis",
                     "publish.events=redis", f"publish.redis_url={env.get('GENRE_REDIS_URL', 'redis://127.0.0.1:6379/0')}",
                     f"publish.redis_prefix=genre-prod-{tag}", "publish.force=true"]
        run([env["GENRE_PYTHON"], "-m", "genre_lib.datasets", *[a for o in overrides for a in ("--set", o)]],
            env, logdir / "datasets.log")
        timings["synthetic_data_s"] = time.time() - t

        t = time.time()
        host = env["GENRE_BIND_HOST"]
        procs.start("mlflow", ["mlflow", "server", "--backend-store-uri", env["GENRE_MLFLOW_BACKEND_URI"],
                               "--artifacts-destination", env["GENRE_MLFLOW_ARTIFACTS"],
                               "--host", host, "--port", env["GENRE_MLFLOW_PORT"], "--workers", "1"])
        # a Spark standalone master with two workers: every spark-submit of the DAG (spark_default) goes there
        spark = stack.enter_context(standalone.cluster(state / "spark", workers=2, cores=1, memory="2g",
                                                       start=procs.start))
        env["GENRE_SPARK_MASTER"] = spark.url
        env["AIRFLOW_CONN_SPARK_DEFAULT"] = json.dumps({"conn_type": "spark", "host": spark.url})
        summary["spark_master"] = spark.url
        procs.start("api-server", ["airflow", "api-server", "--host", host, "--port", env["AIRFLOW__API__PORT"]])
        procs.start("scheduler", ["airflow", "scheduler"])
        procs.start("dag-processor", ["airflow", "dag-processor"])
        procs.start("celery-worker", ["airflow", "celery", "worker", "--skip-serve-logs",
                                      "--queues", env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"],
                                      "--concurrency", env["AIRFLOW__CELERY__WORKER_CONCURRENCY"],
                                      "--celery-hostname", f"genre-{tag}@%h"])
        wait_http(f"{env['MLFLOW_TRACKING_URI']}/health", 180, procs)
        wait_http(f"{env['AIRFLOW__API__BASE_URL']}/api/v2/monitor/health", 240, procs)
        timings["servers_up_s"] = time.time() - t

        t = time.time()
        while not sql(env, "SELECT 1 FROM dag WHERE dag_id=%s", (DAG_ID,)):
            procs.check_alive()
            if time.time() - t > 240:
                raise TimeoutError("dag-processor did not register genre_nightly within 240s")
            time.sleep(2)
        timings["dag_parsed_s"] = time.time() - t
        run(["airflow", "dags", "unpause", DAG_ID], env, logdir / "unpause.log")
        run_id = f"prodcheck__{tag}"
        conf = {"config": "configs/default.yaml", "run_date": RUN_DATE, "overrides": overrides}
        run(["airflow", "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(conf)],
            env, logdir / "trigger.log")
        log(f"triggered {run_id}; waiting for it (scheduler -> celery worker)")

        t = time.time()
        last = None
        while True:
            procs.check_alive()
            (dr_state,), = sql(env, "SELECT state FROM dag_run WHERE dag_id=%s AND run_id=%s", (DAG_ID, run_id))
            tis = sql(env, "SELECT task_id, state FROM task_instance WHERE dag_id=%s AND run_id=%s "
                      "ORDER BY task_id", (DAG_ID, run_id))
            now = f"{dr_state}: " + ", ".join(f"{k}={v}" for k, v in tis if v)
            if now != last:
                log(now)
                last = now
            if dr_state in ("success", "failed"):
                break
            if time.time() - t > args.timeout:
                raise TimeoutError(f"DAG run still {dr_state} after {args.timeout:.0f}s")
            time.sleep(5)
        timings["dag_run_s"] = time.time() - t
        summary["run_id"] = run_id
        summary["dag_run_state"] = dr_state
        if dr_state != "success":
            raise RuntimeError(f"DAG run {run_id} {dr_state}; task logs under {env['AIRFLOW_HOME']}/logs")

        # the tasks ran on this check's Celery worker
        worker_log = (logdir / "celery-worker.log").read_text()
        ran = [ln for ln in worker_log.splitlines() if "Executing workload in Celery" in ln and run_id in ln]
        sys.path.insert(0, str(ROOT))
        from genre_lib.lake.tables import STAGES
        assert len(ran) >= len(STAGES) + 2, f"celery worker log shows {len(ran)} of the run's tasks"
        summary["celery_workloads"] = len(ran)
        summary.update(verify(env, run_id, lake_root, overrides))
        summary.update(verify_serving(run_id, lake_root, overrides))
        summary["spark_applications"] = verify_cluster(spark)
        t = time.time()
        summary["local_reference"] = verify_local_equal(env, lake_root, state / "lake-local", overrides, logdir)
        timings["local_reference_s"] = time.time() - t
        summary["mlflow_tracking_uri"] = env["MLFLOW_TRACKING_URI"]
        rc = 0
        log("PASS: every task succeeded on the Celery worker, every declared table committed, MLflow parent run + "
            "one FINISHED child run per stage on the server, the night served from Redis with its event on the stream")
    except (Exception, KeyboardInterrupt) as e:  # report, then still stop everything
        summary["error"] = f"{type(e).__name__}: {e}"
        log(f"FAIL: {summary['error']}")
        for name in ("scheduler", "celery-worker", "api-server", "mlflow"):
            f = logdir / f"{name}.log"
            if f.exists():
                errs = [ln for ln in f.read_text().splitlines() if "ERROR" in ln or "Traceback" in ln]
                if errs:
                    log(f"{name}.log errors (last 5):\n  " + "\n  ".join(errs[-5:]))
    finally:
        procs.stop_all()
        stack.close()
        timings["total_s"] = time.time() - t_all
        summary["timings"] = {k: round(v, 1) for k, v in timings.items()}
        (state / "prod-check.json").write_text(json.dumps(summary, indent=2, default=str))
        log(f"timings: {summary['timings']}; summary in {state / 'prod-check.json'}")
        if args.fresh and not args.keep_state:
            try:
                drop_databases(env, dbs)
            except Exception as e:  # noqa: BLE001
                log(f"could not drop {dbs}: {e}")
            if rc == 0 and temp_state:
                shutil.rmtree(temp_state, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
