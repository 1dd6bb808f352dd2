"""All-user top-10 at ML-25M shape (162,541 users x 62,423 items, rank 64, synthetic factors):

  (a) genre_lib.ranking.topk.block_topk_many (one blend): users in blocks of recommend.execution.block_users, one matrix product
      per block, exact top-k by chunk-max pruning (topk_rows)
  (b) Spark ALS recommendForAllUsers on an ALSModel holding the same factors (fit time excluded)
  (c) the floor: the bare float32 products of the same blocks, nothing else

    python bench/topk.py [--users N --items M --rank R --block B --threads T --repeat R --no-spark]

(a) and (c) run interleaved, --repeat times each, so load from other processes on the machine hits
both alike; each line gives the best and the median wall time and the best CPU time of the process
(both torch threads; steadier than wall time on a shared machine). Ratios use the best wall times.
Checks (a) against torch.topk on a sample of users. Peak memory of (a) is the factors plus one
block_users x items float32 score block (plus its k*64-column candidate set).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genre_lib.ranking.topk import block_topk_many  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def factors(n_users: int, n_items: int, rank: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n_users, rank, generator=g) / rank ** 0.5
    v = torch.randn(n_items, rank, generator=g) * torch.linspace(0.5, 1.5, n_items)[:, None]  # popularity-like spread
    return u.contiguous(), v.contiguous()



def block_topk(score_block, n_users: int, k: int, block_users: int):
    """Top k per user over `score_block(rows)`, one block of users at a time: the ranker's
    block_topk_many with a single score matrix."""
    return block_topk_many(lambda rows: [(None, score_block(rows))], [None], n_users, k, block_users)[None]


def run_block_topk(u, v, k, block):
    buf = torch.empty(block, v.shape[0])
    vt = v.T

    def score(rows):
        out = buf[:len(rows)]
        torch.mm(u[rows[0]:rows[-1] + 1], vt, out=out)
        return out

    t = time.perf_counter()
    vals, idx = block_topk(score, u.shape[0], k, block)
    return time.perf_counter() - t, vals, idx


def run_floor(u, v, block):
    buf = torch.empty(block, v.shape[0])
    vt = v.T
    t = time.perf_counter()
    for s in range(0, u.shape[0], block):
        e = min(s + block, u.shape[0])
        torch.mm(u[s:e], vt, out=buf[:e - s])
    return time.perf_counter() - t


def run_spark_als(u, v, k, master: str) -> float:
    """ALSModel with our factors: fit a 1-iteration ALS of the same rank for valid metadata, save it,
    swap in our factor tables, load it back, then time recommendForAllUsers to completion."""
    import os
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    import pandas as pd
    from pyspark.ml.recommendation import ALS, ALSModel
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(master).appName("bench-topk").config("spark.driver.memory", "6g")
             .config("spark.sql.shuffle.partitions", "8").config("spark.ui.enabled", "false")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    tmp = Path(tempfile.mkdtemp(prefix="bench-als-"))
    try:
        seed = spark.createDataFrame(pd.DataFrame({"user": [0, 1], "item": [0, 1], "rating": [1.0, 1.0]}))
        ALS(rank=u.shape[1], maxIter=1, userCol="user", itemCol="item", seed=0).fit(seed).write().overwrite().save(str(tmp / "m"))
        for name, mat in (("userFactors", u), ("itemFactors", v)):
            df = pd.DataFrame({"id": np.arange(mat.shape[0], dtype=np.int32), "features": list(mat.numpy())})
            shutil.rmtree(tmp / "m" / name)
            spark.createDataFrame(df, "id int, features array<float>").repartition(8).write.parquet(str(tmp / "m" / name))
        model = ALSModel.load(str(tmp / "m"))
        t = time.perf_counter()
        model.recommendForAllUsers(k).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - t
    finally:
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=162_541)
    p.add_argument("--items", type=int, default=62_423)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--block", type=int, default=1024, help="recommend.execution.block_users")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--spark-master", default="local[*]")
    p.add_argument("--no-spark", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    u, v = factors(a.users, a.items, a.rank)
    base = peak_rss_mb()
    print(f"shape {a.users} x {a.items}, rank {a.rank}, k {a.k}, block {a.block}, "
          f"torch threads {torch.get_num_threads()}, repeats {a.repeat}")
    run_floor(u[:a.block * 2], v, a.block)  # warm up
    wall = {"a": [], "c": []}
    cpu = {"a": [], "c": []}
    for _ in range(a.repeat):  # interleaved
        c0 = time.process_time()
        wall["c"].append(run_floor(u, v, a.block))
        cpu["c"].append(time.process_time() - c0)
        c0 = time.process_time()
        t, vals, idx = run_block_topk(u, v, a.k, a.block)
        cpu["a"].append(time.process_time() - c0)
        wall["a"].append(t)
    best = {n: min(t) for n, t in wall.items()}
    sample = torch.randint(0, a.users, (256,), generator=torch.Generator().manual_seed(1))
    ref = torch.topk(u[sample] @ v.T, a.k, dim=1)
    exact = torch.equal(vals[sample], ref.values)
    block_mb = a.block * a.items * 4 / 2**20
    line = lambda n: f"{best[n]:8.2f} s (median {np.median(wall[n]):.2f}; CPU {min(cpu[n]):.2f} s)"  # noqa: E731
    print(f"(c) floor, bare float32 products : {line('c')}")
    print(f"(a) block top-k (this job)       : {line('a')}")
    print(f"    (a)/(c) = {best['a'] / best['c']:.2f} wall, {min(cpu['a']) / min(cpu['c']):.2f} CPU  (target <= 1.3)")
    print(f"    exact vs torch.topk on 256 users: {exact}")
    print(f"    peak RSS {peak_rss_mb():.0f} MB (factors {(u.numel() + v.numel()) * 4 / 2**20:.0f} MB, "
          f"score block {block_mb:.0f} MB = block_users x items x 4 B; before the runs {base:.0f} MB)")
    t_block, t_floor = best["a"], best["c"]
    if not a.no_spark:
        t_spark = run_spark_als(u, v, a.k, a.spark_master)
        print(f"(b) Spark ALS recommendForAllUsers: {t_spark:8.2f} s   (b)/(a) = {t_spark / t_block:.2f}, "
              f"(b)/(c) = {t_spark / t_floor:.2f}")


if __name__ == "__main__":
    main()
