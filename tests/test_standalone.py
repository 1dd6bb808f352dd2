"""The two Spark stages run unchanged on a Spark standalone cluster: a real master and worker (two
more JVMs on this machine), the jobs launched by `spark-submit --master spark://...` exactly as the
README shows, executors in their own JVM writing the lake; their tables equal the local-mode ones.
The recommend and evaluate stages with `recommend.execution.engine=spark` rank on those executors and equal the
local engine."""
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from genre_lib.orchestration import standalone
from genre_lib.orchestration.standalone import BIN

ROOT = Path(__file__).resolve().parent.parent
D = dt.date(2026, 11, 22)
TINY = ["data.synthetic.users=40", "data.synthetic.items=60", "data.synthetic.interactions=1500",
        "data.synthetic.days=3", "spark.shuffle_partitions=2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master and one 2-core worker (genre_lib/orchestration/standalone.py)."""
    with standalone.cluster(tmp_path_factory.mktemp("standalone"), workers=1, cores=2, memory="2g") as c:
        yield c


def test_clean_and_genre_weights_on_a_standalone_cluster(cluster, spark, tmp_path):
    from genre_lib.config.settings import load_config
    from genre_lib.lake.storage import Lake
    from genre_lib.orchestration.jobrun import JobContext
    from genre_lib.stages import clean_interactions as clean
    from genre_lib.stages import genre_weights as genres

    url = cluster.url
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
    apps = cluster.apps()
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
        a, b = (standalone.canonical(lake.read_pandas(table, D)) for lake in (remote, local))
        assert len(a) > 0, table
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, obj=f"{table} (cluster vs local)")
    for key in ("raw_rows", "clean_rows", "quarantined_rows", "duplicate_rows"):
        assert remote.manifest("interactions_clean", D)[key] == local.manifest("interactions_clean", D)[key], key

    # recommend with engine=spark on the cluster's executors equals engine=local on the driver
    from genre_lib.stages import recommend

    run = subprocess.run([str(BIN / "spark-submit"), "--master", url, "--conf", "spark.executor.memory=1g",
                          "jobs/recommend.py", "--run-date", D.isoformat(),
                          *sets([*on_cluster, "recommend.execution.engine=spark", "recommend.execution.block_users=7"])],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert cluster.apps()["genre-recommend"]["cores"] > 0
    recommend.run(JobContext.of("recommend", cfg, D, "local", spark))
    order = lambda lake: lake.read_pandas("recommendations", D).sort_values(["user_id", "rank"]).reset_index(drop=True)  # noqa: E731
    a, b = order(remote), order(local)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a[["user_id", "rank", "item_id", "reason"]], b[["user_id", "rank", "item_id", "reason"]])
    pd.testing.assert_frame_equal(a.drop(columns=["user_id", "rank", "item_id", "reason", "variant"]),
                                  b.drop(columns=["user_id", "rank", "item_id", "reason", "variant"]),
                                  check_exact=False, rtol=1e-5, atol=1e-5, obj="recommendations (spark vs local engine)")

    # evaluate with engine=spark: its refit ranked on the cluster's executors, the same metrics as local
    from genre_lib.stages import evaluate

    run = subprocess.run([str(BIN / "spark-submit"), "--master", url, "--conf", "spark.executor.memory=1g",
                          "jobs/evaluate.py", "--run-date", D.isoformat(),
                          *sets([*on_cluster, "recommend.execution.engine=spark", "recommend.execution.block_users=7"])],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert cluster.apps()["genre-evaluate"]["cores"] > 0
    import mlflow

    with mlflow.start_run():  # evaluate logs to MLflow; a run left active would leak into later tests
        evaluate.run(JobContext.of("evaluate", cfg, D, "local", spark))
    metrics = lambda lake: lake.read_json("evaluation", D, "metrics.json")  # noqa: E731
    a, b = metrics(remote)["models"], metrics(local)["models"]
    assert set(a) == set(b) and b["blend"]["users"] > 0
    for name in b:
        assert a[name] == pytest.approx(b[name], rel=1e-9, abs=1e-12), name
