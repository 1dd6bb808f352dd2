"""recommend.execution.engine=spark ranks the same items in the same order as the local engine (scores to
1e-5), through the lake's commit protocol, with A/B arms too; the model artifact is removed after
the commit; the re-ranker is refused with the spark engine by name."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from genre_lib.config.settings import ConfigError, load_config
from genre_lib.lake.history import read_history_pandas
from genre_lib.lake.storage import Lake
from genre_lib.orchestration.jobrun import JobContext
from genre_lib.ranking.interest import item_genres_pandas, user_genre_weights_pandas
from genre_lib.stages import recommend
from tests.test_tuning import MANIFEST, D, write_tiny_night


def night(root) -> None:
    """A tiny committed night with what the recommend stage reads (user_genre_weights included)."""
    write_tiny_night(root)
    lake = Lake(str(root))
    cfg = load_config("configs/default.yaml")
    memberships = item_genres_pandas(lake.read_pandas("items_clean", D), cfg.genres.multi_genre)
    weights = user_genre_weights_pandas(read_history_pandas(lake, D), memberships, cfg.genres, dt.date.fromisoformat(D))
    lake.write_pandas("user_genre_weights", D, weights, MANIFEST)


def ranked(cfg, spark) -> pd.DataFrame:
    recommend.run(JobContext.of("recommend", cfg, D, "test", spark))
    df = Lake(cfg.lake_root).read_pandas("recommendations", D)
    return df.sort_values(["user_id", "rank"]).reset_index(drop=True)


@pytest.mark.parametrize("ab", [False, True])
def test_spark_engine_equals_local(tmp_path, spark, ab, monkeypatch):
    night(tmp_path / "lake")
    sets = [f"lake.root={tmp_path}/lake", "recommend.execution.block_users=7"]  # several blocks, a ragged last one
    if ab:
        sets += ["ab.salt=s", "ab.variants=[{name: a, share: 0.5}, {name: b, share: 0.5, "
                              "overrides: {recommend.cf.reg: 50, recommend.weights.genre: 2}}]"]
    local = ranked(load_config("configs/default.yaml", sets), spark)
    remote = ranked(load_config("configs/default.yaml", [*sets, "recommend.execution.engine=spark"]), spark)
    assert len(local) > 0 and local["user_id"].nunique() == 40
    text = ["user_id", "rank", "item_id", "reason", "variant"]
    pd.testing.assert_frame_equal(remote[text], local[text])
    floats = [c for c in local.columns if c not in text]
    np.testing.assert_allclose(remote[floats].to_numpy(float), local[floats].to_numpy(float), rtol=1e-5, atol=1e-5)
    if ab:
        assert set(remote["variant"]) == {"a", "b"}
    assert not list((tmp_path / "lake" / "_artifacts" / "recommend").rglob("*.pkl"))  # removed after commit

    # past user_block_rows (1,500 rows, 500 a block: three blocks of users), both engines: the same table
    fitted = []
    fit_users = recommend.fit_users
    monkeypatch.setattr(recommend, "fit_users", lambda items, df, *a: fitted.append(set(df["user_id"])) or fit_users(items, df, *a))
    for engine in ("local", "spark"):
        fitted.clear()
        got = ranked(load_config("configs/default.yaml", [*sets, "recommend.execution.user_block_rows=500",
                                                          f"recommend.execution.engine={engine}"]), spark)
        pd.testing.assert_frame_equal(got[text], local[text])
        np.testing.assert_allclose(got[floats].to_numpy(float), local[floats].to_numpy(float), rtol=1e-5, atol=1e-5)
        blocks = list({frozenset(u) for u in fitted})  # an A/B refit fits a block's users again
        assert len(blocks) == 3 and sum(map(len, blocks)) == 40
    assert not [p for p in (tmp_path / "lake" / "_artifacts").rglob("*") if p.is_file()]  # scratch removed


def test_evaluate_spark_engine_equals_local(tmp_path, spark):
    """evaluate's refit ranked on the executors (every variant in one pass) scores as the local engine."""
    from genre_lib.evaluation import offline
    from genre_lib.evaluation import scratch as evaluation_scratch
    from genre_lib.lake.catalogue import Catalogue

    night(tmp_path / "lake")
    cfg = load_config("configs/default.yaml", [f"lake.root={tmp_path}/lake", "recommend.execution.block_users=7",
                                               "recommend.execution.engine=spark"])
    lake = Lake(cfg.lake_root)
    history, catalogue = read_history_pandas(lake, D), Catalogue.from_lake(lake, D)
    run_date = dt.date.fromisoformat(D)
    local = offline.evaluate(history, catalogue, cfg, spark=spark, run_date=run_date)
    ctx = JobContext.of("evaluate", cfg, D, "test", spark)
    remote = offline.evaluate(history, catalogue, cfg, spark=spark, run_date=run_date,
                               rank_remote=evaluation_scratch.remote_ranker(ctx))
    assert set(remote["models"]) == set(local["models"]) and len(local["models"]) > 4
    assert local["models"]["blend"]["users"] > 10 and local["models"]["blend"]["ndcg@10"] > 0
    for name, m in local["models"].items():
        assert remote["models"][name] == pytest.approx(m, rel=1e-9, abs=1e-12), name
    assert not [p for p in (tmp_path / "lake" / "_artifacts").rglob("*") if p.is_file()]  # scratch removed

    # the metrics' inputs through parquet files in the lake's scratch space, as the stage runs them
    scratch = evaluation_scratch.Scratch(ctx)
    try:
        staged = offline.evaluate(history, catalogue, cfg, spark=spark, run_date=run_date, scratch=scratch)
        written = {p.parent.name for p in (tmp_path / "lake" / "_artifacts" / "evaluate").rglob("*.parquet")}
        assert {"truth", "item_users", "model-blend"} <= written
    finally:
        scratch.remove()
    for name, m in local["models"].items():
        assert staged["models"][name] == pytest.approx(m, rel=1e-9, abs=1e-12), name
    assert not [p for p in (tmp_path / "lake" / "_artifacts").rglob("*") if p.is_file()]


def test_evaluate_in_user_blocks_equals_one_block(tmp_path, spark):
    """The stage past user_block_rows (three blocks of users, every block split, fit and ranked alone,
    rows through the scratch's parquet parts): every metric as one block in memory gives."""
    import json

    from genre_lib.evaluation import offline
    from genre_lib.lake.catalogue import Catalogue
    from genre_lib.stages import evaluate

    night(tmp_path / "lake")
    cfg = load_config("configs/default.yaml", [f"lake.root={tmp_path}/lake", "recommend.execution.user_block_rows=500",
                                               "genres.shrinkage=5", "mlflow.experiment=blocks"])
    assert cfg.eval.protocol == "temporal" and cfg.genres.shrinkage > 0  # the shrinkage prior summed over blocks
    lake = Lake(cfg.lake_root)
    one = offline.evaluate(read_history_pandas(lake, D), Catalogue.from_lake(lake, D), cfg,
                            run_date=dt.date.fromisoformat(D))
    import mlflow

    with mlflow.start_run():  # the stage logs to the job's run (jobrun.py opens it)
        evaluate.run(JobContext.of("evaluate", cfg, D, "test", spark))
    with open(lake.files("evaluation", D)[0]) as f:
        blocked = json.load(f)
    assert blocked["user_blocks"] == 3 and "user_blocks" not in one
    assert (blocked["train_rows"], blocked["test_rows"]) == (one["train_rows"], one["test_rows"])
    assert set(blocked["models"]) == set(one["models"]) and one["models"]["blend"]["ndcg@10"] > 0
    for name, m in one["models"].items():
        assert blocked["models"][name] == pytest.approx(m, rel=1e-6, abs=1e-9), name
    assert not [p for p in (tmp_path / "lake" / "_artifacts").rglob("*") if p.is_file()]  # scratch removed


def test_spark_engine_refuses_the_reranker():
    with pytest.raises(ConfigError, match="recommend.execution.engine: spark"):
        load_config("configs/default.yaml", ["recommend.execution.engine=spark", "rerank.enabled=on"])
