"""The two Spark stages run unchanged on a Spark standalone cluster: a real master and worker (two
more JVMs on this machine), the jobs launched by `spark-submit --master spark://...` exactly as the
README shows, executors in their own JVM writing the lake; their tables equal the local-mode ones.
The recommend stage with `recommend.engine=spark` ranks on those executors and equals the local engine."""
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
D = dt.date(2026, 11, 22)
TINY = ["data.synthetic.users=40", "data.synthetic.items=60", "data.synthetic.interactions=1500",
        "data.synthetic.days=3", "spark.shuffle_partitions=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(ui: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master and one 2-core worker; yields (master URL, master UI port)."""
    if not (BIN / "spark-class").exists():
        pytest.fail(f"{BIN / 'spark-class'} missing: the pyspark install is incomplete")
    work = tmp_path_factory.mktemp("standalone")
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "SPARK_LOG_DIR": str(work)}
    spark_class = str(BIN / "spark-class")
    procs = [subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)],
                              env=env, stdout=open(work / "master.log", "w"), stderr=subprocess.STDOUT)]
    try:
        deadline = time.time() + 180  # a loaded CI machine starts JVMs slowly
        while True:
            try:
                _state(ui)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"master did not start: {(work / 'master.log').read_text()[-2000:]}")
                time.sleep(1)
        procs.append(subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "2",
             "--memory", "2g", "--webui-port", str(_free_port()), "--work-dir", str(work / "work")],
            env=env, stdout=open(work / "worker.log", "w"), stderr=subprocess.STDOUT))
        while _state(ui).get("aliveworkers", 0) < 1:
            if time.time() > deadline:
                raise RuntimeError(f"worker did not register: {(work / 'worker.log').read_text()[-2000:]}")
            time.sleep(1)
        yield url, ui
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _frame(lake, table):
    """A table as a frame in a canonical row order, without the run id (the two runs differ in it);
    list cells (genres) as text. Rows are ordered on floats rounded to 9 places: sums may differ in
    their last bits with the order in which a shuffle delivers rows."""
    df = lake.read_pandas(table, D).drop(columns="run_id", errors="ignore")
    lists = [c for c in df if df[c].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any()]
    df = df.astype({c: str for c in lists})
    key = df.round({c: 9 for c in df.select_dtypes("float").columns})
    return df.loc[key.sort_values(list(df.columns)).index].reset_index(drop=True)


def test_clean_and_genre_weights_on_a_standalone_cluster(cluster, spark, tmp_path):
    from genre_lib import clean, genres
    from genre_lib.config import load_config
    from genre_lib.jobrun import JobContext
    from genre_lib.tables import Lake

    url, ui = cluster
    data = tmp_path / "data"
    common = [f"data.path={data}", *TINY]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYSPARK_PYTHON": sys.executable,
           "GENRE_ALLOWED_ROOTS": str(tmp_path)}
    sets = lambda overrides: [a for o in overrides for a in ("--set", o)]  # noqa: E731
    subprocess.run([sys.executable, "-m", "genre_lib.datasets", *sets(common)], cwd=ROOT, env=env, check=True,
                   capture_output=True)

    on_cluster = [*common, f"lake.root={tmp_path / 'lake-cluster'}"]
    for job in ("clean_interactions", "genre_weights"):
        run = subprocess.run([str(BIN / "spark-submit"), "--master", url, "--conf", "spark.executor.memory=1g",
                              f"jobs/{job}.py", "--run-date", D.isoformat(), *sets(on_cluster)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    apps = {a["name"]: a for a in _state(ui)["completedapps"]}
    for job in ("clean_interactions", "genre_weights"):  # ran on the cluster's executors, and finished
        assert apps[f"genre-{job}"]["state"] == "FINISHED" and apps[f"genre-{job}"]["cores"] > 0

    # the same stages in local mode, as reference
    cfg = load_config(str(ROOT / "configs" / "default.yaml"), [*common, f"lake.root={tmp_path / 'lake-local'}"])
    local = Lake(cfg.lake_root)
    clean.run(JobContext.of("clean_interactions", cfg, D, "local", spark))
    genres.run(JobContext.of("genre_weights", cfg, D, "local", spark))

    remote = Lake(str(tmp_path / "lake-cluster"))
    assert remote.manifest("interactions_clean", D)["quarantined_rows"] > 0  # the dirty rows took part
    for table in ("interactions_clean", "interactions_quarantine", "items_clean", "item_genres", "genre_vocab",
                  "user_genre_weights"):
        assert D.isoformat() in remote.committed(table), table
        a, b = _frame(remote, table), _frame(local, table)
        assert len(a) > 0, table
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, obj=f"{table} (cluster vs local)")
    for key in ("raw_rows", "clean_rows", "quarantined_rows", "duplicate_rows"):
        assert remote.manifest("interactions_clean", D)[key] == local.manifest("interactions_clean", D)[key], key

    # recommend with engine=spark on the cluster's executors equals engine=local on the driver
    from genre_lib import recommend

    run = subprocess.run([str(BIN / "spark-submit"), "--master", url, "--conf", "spark.executor.memory=1g",
                          "jobs/recommend.py", "--run-date", D.isoformat(),
                          *sets([*on_cluster, "recommend.engine=spark", "recommend.block_users=7"])],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert {a["name"]: a for a in _state(ui)["completedapps"]}["genre-recommend"]["cores"] > 0
    recommend.run(JobContext.of("recommend", cfg, D, "local", spark))
    order = lambda lake: lake.read_pandas("recommendations", D).sort_values(["user_id", "rank"]).reset_index(drop=True)  # noqa: E731
    a, b = order(remote), order(local)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a[["user_id", "rank", "item_id", "reason"]], b[["user_id", "rank", "item_id", "reason"]])
    pd.testing.assert_frame_equal(a.drop(columns=["user_id", "rank", "item_id", "reason", "variant"]),
                                  b.drop(columns=["user_id", "rank", "item_id", "reason", "variant"]),
                                  check_exact=False, rtol=1e-5, atol=1e-5, obj="recommendations (spark vs local engine)")
