"""Splits and metrics: the stratified split against Recommenders' algorithm, the numpy reference on a
hand-worked case, and the Spark implementation agreeing with the reference."""
import math

import numpy as np
import pandas as pd
import pytest

from genre_lib.evaluation.offline import compared_models
from genre_lib.protocol.metrics import ranking_metrics
from genre_lib.protocol.splits import stratified_split, temporal_split


def _recommenders_stratified(data, ratio=0.75, seed=42):
    """Recommenders' _do_stratification (random, filter_by=item, two-way), step by step."""
    data = data.copy()
    np.random.seed(seed)
    data["random"] = np.random.rand(data.shape[0])
    data = data.sort_values(["item_id", "random"])
    groups = data.groupby("item_id")
    data["count"] = groups["item_id"].transform("count")
    data["rank"] = groups.cumcount() + 1
    data = data.drop("random", axis=1)
    out, prev = [], None
    for threshold in np.cumsum([ratio, 1 - ratio]):
        cond = data["rank"] <= round(threshold * data["count"])
        if prev is not None:
            cond &= data["rank"] > round(prev * data["count"])
        out.append(data[cond].drop(["rank", "count"], axis=1))
        prev = threshold
    return out


@pytest.fixture
def interactions():
    rng = np.random.default_rng(0)
    n = 600
    return pd.DataFrame({"user_id": rng.integers(0, 40, n).astype(str), "item_id": rng.zipf(1.6, n).clip(1, 80).astype(str),
                         "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s")})


def test_stratified_split_matches_recommenders(interactions):
    train, test = stratified_split(interactions)
    ref_train, ref_test = _recommenders_stratified(interactions)
    assert sorted(train.index) == sorted(ref_train.index)
    assert sorted(test.index) == sorted(ref_test.index)
    counts = interactions["item_id"].value_counts()
    got = train["item_id"].value_counts().reindex(counts.index, fill_value=0)
    assert (got == np.round(0.75 * counts)).all()  # half to even: 2 -> 2, 6 -> 4
    assert len(train) + len(test) == len(interactions)


def test_temporal_split_holds_out_each_users_latest(interactions):
    train, test = temporal_split(interactions, 0.2)
    assert len(train) + len(test) == len(interactions)
    for user, grp in interactions.groupby("user_id"):
        n_test = int(np.floor(0.2 * len(grp) + 0.5))
        held = test[test["user_id"] == user]
        assert len(held) == n_test
        if n_test:
            assert held["ts"].min() >= train[train["user_id"] == user]["ts"].max()


def test_reference_metrics_hand_worked():
    truth = pd.DataFrame({"user_id": ["a", "a", "a", "b", "c"], "item_id": ["1", "2", "9", "5", "7"]})
    recs = pd.DataFrame({"user_id": ["a"] * 3 + ["b"] * 3, "item_id": ["1", "3", "2", "4", "6", "8"],
                         "rank": [1, 2, 3, 1, 2, 3]})
    m = ranking_metrics(truth, recs, 3, n_catalogue=10)
    # users in both: a, b. a hits at ranks 1 and 3 of 3 relevant; b none.
    assert m["users"] == 2
    assert m["precision@3"] == pytest.approx(2 / 6)
    assert m["recall@3"] == pytest.approx((2 / 3) / 2)
    dcg = 1 / math.log(2) + 1 / math.log(4)
    idcg = 1 / math.log(2) + 1 / math.log(3) + 1 / math.log(4)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg / 2)
    assert m["map@3"] == pytest.approx((1 / 1 + 2 / 3) / 3 / 2)
    assert m["hit_rate@3"] == pytest.approx(0.5)
    assert m["coverage@3"] == pytest.approx(0.6)


def test_diversity_and_novelty_reference():
    recs = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["1", "2", "1", "3"], "rank": [1, 2, 1, 2]})
    genres = pd.DataFrame({"item_id": ["1", "2", "3", "3"], "genre": ["x", "x", "x", "y"], "score": [1.0, 1.0, 1.0, 1.0]})
    users = pd.DataFrame({"item_id": ["1", "2", "3"], "users": [4, 2, 1]})
    m = ranking_metrics(recs.iloc[:0][["user_id", "item_id"]], recs, 2, item_genres=genres, item_users=users, n_train_users=4)
    # a: same genre -> 0; b: cos = 1/sqrt2 -> 1 - 0.7071
    assert m["diversity@2"] == pytest.approx((0 + 1 - 1 / math.sqrt(2)) / 2)
    assert m["novelty@2"] == pytest.approx(np.mean([0, 1, 0, 2]))


def test_variants_cover_ablations():
    v = compared_models({"genre": 1.0, "content": 0.0, "cf": 2.0, "popularity": 0.5},
                       {"genre": True, "content": True, "cf": True, "popularity": True})
    assert v["blend"] == {"genre": 1.0, "cf": 2.0, "popularity": 0.5}
    assert {"genre", "content", "cf", "popularity", "blend-genre", "blend-cf", "blend-popularity"} <= set(v)
    assert "blend-content" not in v


def test_spark_metrics_agree_with_reference(spark):
    from genre_lib.protocol.metrics import spark_ranking_metrics

    rng = np.random.default_rng(3)
    truth = pd.DataFrame({"user_id": rng.integers(0, 30, 300).astype(str), "item_id": rng.integers(0, 60, 300).astype(str)}).drop_duplicates()
    recs = pd.concat([pd.DataFrame({"user_id": str(u), "item_id": rng.choice(60, 12, replace=False).astype(str),
                                    "rank": np.arange(1, 13)}) for u in range(35)], ignore_index=True)
    genres = pd.DataFrame({"item_id": rng.integers(0, 60, 120).astype(str), "genre": rng.choice(list("abcd"), 120),
                           "score": rng.random(120)}).drop_duplicates(["item_id", "genre"])
    users = pd.DataFrame({"item_id": np.arange(60).astype(str), "users": rng.integers(0, 20, 60).astype(float)})
    kw = dict(n_catalogue=60, n_train_users=30)
    ref = ranking_metrics(truth, recs, 10, item_genres=genres, item_users=users, **kw)
    got = spark_ranking_metrics(spark.createDataFrame(truth), spark.createDataFrame(recs), 10,
                                item_genres=spark.createDataFrame(genres), item_users=spark.createDataFrame(users), **kw)
    assert set(got) == set(ref)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key


def test_lake_history_back_in_u_data_order_gives_the_published_split(tmp_path):
    from genre_lib.datasets.movielens import in_source_order

    rng = np.random.default_rng(3)
    src = pd.DataFrame({"user_id": rng.integers(1, 30, 300).astype(str), "item_id": rng.integers(1, 50, 300).astype(str)})
    src = src.drop_duplicates(ignore_index=True).assign(rating="4", ts="881250949")
    src.to_csv(tmp_path / "u.data", sep="\t", header=False, index=False)
    lake_order = src.sort_values(["ts", "user_id", "item_id"]).reset_index(drop=True)  # what the lake gives
    back = in_source_order(lake_order, tmp_path)
    assert back[["user_id", "item_id"]].equals(src[["user_id", "item_id"]])
    published = stratified_split(src)[1][["user_id", "item_id"]].reset_index(drop=True)
    assert stratified_split(back)[1][["user_id", "item_id"]].reset_index(drop=True).equals(published)
    assert not stratified_split(lake_order)[1][["user_id", "item_id"]].reset_index(drop=True).equals(published)


def test_spark_metrics_do_not_depend_on_how_rows_are_split(spark):
    """The same night twice must give the same bits: Spark's sums of doubles otherwise follow the
    partitioning and the order tasks finish."""
    from genre_lib.protocol.metrics import spark_ranking_metrics

    rng = np.random.default_rng(5)
    truth = pd.DataFrame({"user_id": rng.integers(0, 400, 4000).astype(str),
                          "item_id": rng.integers(0, 300, 4000).astype(str)}).drop_duplicates()
    recs = pd.concat([pd.DataFrame({"user_id": str(u), "item_id": rng.choice(300, 10, replace=False).astype(str),
                                    "rank": np.arange(1, 11)}) for u in range(400)], ignore_index=True)
    genres = pd.DataFrame({"item_id": rng.integers(0, 300, 900).astype(str), "genre": rng.choice(list("abcdefgh"), 900),
                           "score": rng.random(900)}).drop_duplicates(["item_id", "genre"])
    users = pd.DataFrame({"item_id": np.arange(300).astype(str), "users": rng.integers(0, 50, 300).astype(float)})

    def run(parts: int, seed: int) -> dict:
        frames = [spark.createDataFrame(f.sample(frac=1.0, random_state=seed)).repartition(parts)
                  for f in (truth, recs, genres, users)]
        return spark_ranking_metrics(frames[0], frames[1], 10, item_genres=frames[2], item_users=frames[3],
                                     n_catalogue=300, n_train_users=400)

    first = run(1, 0)
    assert all(run(parts, seed) == first for parts, seed in [(7, 1), (3, 2), (13, 3)])
