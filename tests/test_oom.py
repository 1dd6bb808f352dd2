"""A stage that runs out of memory fails with a clear error and a non-zero exit, and does not hang:
the Spark driver JVM (a deliberately small heap, submitted the way the DAG submits) and the job's
Python process (an address-space limit)."""
import os
import resource
import subprocess
import sys
from pathlib import Path

from genre_lib.lake.spark import SUBMIT_CONF

ROOT = Path(__file__).resolve().parent.parent
D = "2026-11-22"


def _env(tmp_path, fail: str) -> dict:
    return {**os.environ, "GENRE_FAIL_STAGE": fail, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "SPARK_LOCAL_IP": "127.0.0.1"}


def _args(tmp_path) -> list[str]:
    return ["--config", "configs/default.yaml", "--run-date", D, "--set", f"lake.root={tmp_path}/lake"]


def test_spark_driver_out_of_heap_exits_nonzero(tmp_path):
    conf = [a for k, v in SUBMIT_CONF.items() for a in ("--conf", f"{k}={v}")]
    cmd = ["spark-submit", "--master", "local[1]", "--driver-memory", "512m", *conf,
           str(ROOT / "jobs" / "genre_weights.py"), *_args(tmp_path)]
    run = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path, "genre_weights:oom-jvm"), capture_output=True, text=True,
                         timeout=600)  # the hang this guards against never ended
    log = run.stdout + run.stderr
    assert run.returncode != 0, log[-3000:]
    assert "Terminating due to java.lang.OutOfMemoryError" in log, log[-3000:]


def test_local_spark_driver_out_of_heap_names_the_knob(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "genre_weights.py"), *_args(tmp_path),
                          "--set", "spark.driver_memory=512m", "--set", "spark.master=local[1]"], cwd=ROOT,
                         env=_env(tmp_path, "genre_weights:oom-jvm"), capture_output=True, text=True, timeout=600)
    assert run.returncode == 3, (run.stdout + run.stderr)[-3000:]
    assert "the Spark driver JVM is gone" in run.stderr and "spark.driver_memory" in run.stderr, run.stderr[-3000:]


def test_python_out_of_memory_exits_nonzero(tmp_path):
    def limit():  # 6 GiB of address space: enough to import the stack, not for the stage's hog
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "recommend.py"), *_args(tmp_path)], cwd=ROOT,
                         env=_env(tmp_path, "recommend:oom-python"), capture_output=True, text=True, timeout=600,
                         preexec_fn=limit)
    assert run.returncode == 3, (run.stdout + run.stderr)[-3000:]
    assert "ran out of memory in its Python process" in run.stderr, run.stderr[-3000:]
