"""user_genre_weights against hand-computed numbers for each weighting option."""
import datetime as dt

import pandas as pd
import pytest

from genre_lib.config.data import GenresConfig
from genre_lib.ranking import interest
from genre_lib.stages import genre_weights as genres

D = dt.date(2026, 11, 22)


@pytest.fixture(scope="module")
def frames(spark):
    # i_sf: Sci-Fi, i_ac: Action, i_dr: Drama, i_mix: Action+Drama
    items = spark.createDataFrame(pd.DataFrame({
        "item_id": ["i_sf", "i_ac", "i_dr", "i_mix"],
        "genres": [["Sci-Fi"], ["Action"], ["Drama"], ["Action", "Drama"]]}))
    ts = pd.Timestamp("2026-11-22T12:00", tz="UTC")
    rows = ([("u1", "i_sf", "view", None, ts)] * 10 + [("u1", "i_ac", "view", None, ts)] * 5
            + [("u1", "i_dr", "view", None, ts)] * 3
            + [("u2", "i_mix", "rate", 4.0, ts), ("u2", "i_sf", "purchase", None, ts - pd.Timedelta(days=10))]
            + [("u3", "i_dr", "view", None, ts)])
    hist = spark.createDataFrame(pd.DataFrame(rows, columns=["user_id", "item_id", "event", "rating", "ts"]))
    return items, hist


def weights(items, hist, **kw):
    cfg = GenresConfig(**kw)
    ig = genres.item_genres(items, cfg.multi_genre)
    df = genres.user_genre_weights(hist, ig, cfg, D).toPandas()
    return {(r.user_id, r.genre): (r["count"], r.weight, r["rank"]) for _, r in df.iterrows()}


def test_plain_frequencies(frames):
    w = weights(*frames)
    assert w[("u1", "Sci-Fi")][1] == pytest.approx(10 / 18, abs=1e-12)
    assert w[("u1", "Action")][1] == pytest.approx(5 / 18, abs=1e-12)
    assert w[("u1", "Drama")][1] == pytest.approx(3 / 18, abs=1e-12)
    assert [w[("u1", g)][2] for g in ("Sci-Fi", "Action", "Drama")] == [1, 2, 3]
    # split: the Action+Drama item gives half a unit to each
    assert w[("u2", "Action")][0] == pytest.approx(0.5) and w[("u2", "Sci-Fi")][1] == pytest.approx(0.5)


def test_full_multi_genre(frames):
    w = weights(*frames, multi_genre="full")
    assert w[("u2", "Action")][0] == pytest.approx(1.0)
    assert w[("u2", "Sci-Fi")][1] == pytest.approx(1 / 3)


def test_rating_weighted(frames):
    w = weights(*frames, rating_weighted=True, event_weights={"view": 1, "click": 1, "rate": 1, "purchase": 3})
    # u2: rating 4 split over Action/Drama (2 each), purchase weight 3 on Sci-Fi
    assert w[("u2", "Action")][0] == pytest.approx(2.0)
    assert w[("u2", "Sci-Fi")][1] == pytest.approx(3 / 7)


def test_time_decay(frames):
    w = weights(*frames, half_life_days=10)
    # both u2 events decay from the end of the run date: 0.5 day and 10.5 days old
    recent, old = 0.5 ** (0.5 / 10) * 0.5, 0.5 ** (10.5 / 10)
    assert w[("u2", "Sci-Fi")][1] == pytest.approx(old / (old + 2 * recent))


def test_shrinkage_towards_global(frames):
    w = weights(*frames, shrinkage=2.0)
    total = 18 + 2 + 1
    p_drama = (3 + 0.5 + 1) / total
    # u3 has one Drama view: (1 + 2 p) / (1 + 2); genres u3 never saw get 2 p_c / 3
    assert w[("u3", "Drama")][1] == pytest.approx((1 + 2 * p_drama) / 3)
    assert w[("u3", "Sci-Fi")][1] == pytest.approx(2 * (11 / total) / 3)
    for u in ("u1", "u2", "u3"):
        assert sum(v[1] for k, v in w.items() if k[0] == u) == pytest.approx(1.0)


def test_min_interactions(frames):
    w = weights(*frames, min_interactions=2)
    assert not any(k[0] == "u3" for k in w)


def test_vocab_keeps_order():
    prev = pd.DataFrame({"genre": ["Drama", "Action"], "genre_index": [0, 1]})
    items = pd.DataFrame({"genres": [["Action", "Comedy"], ["Anime"]]})
    v = genres.genre_vocab(items, prev)
    assert list(v.genre) == ["Drama", "Action", "Anime", "Comedy"] and list(v.genre_index) == [0, 1, 2, 3]


# views weigh 0: u1 and u3 (views only) have a total of 0; u2 has Action 2, Drama 2 (rating 4,
# split) and Sci-Fi 3 (a purchase)
ZERO_VIEWS = {"rating_weighted": True, "event_weights": {"view": 0, "click": 1, "rate": 1, "purchase": 3}}


def test_users_with_zero_total_are_dropped(frames):
    w = weights(*frames, **ZERO_VIEWS)  # before the guard: DIVIDE_BY_ZERO (ANSI) on u1 and u3
    assert {k[0] for k in w} == {"u2"}
    assert w[("u2", "Sci-Fi")][1] == pytest.approx(3 / 7)
    assert sum(v[1] for v in w.values()) == pytest.approx(1.0)


def test_decay_underflow_leaves_no_rows_not_an_error(frames):
    # a half-life of ~9 s: 0.5 ** (age / half_life) is exactly 0.0 for every event, so every total
    # (and, with shrinkage, the global prior's) is 0
    assert weights(*frames, half_life_days=1e-4) == {}
    assert weights(*frames, half_life_days=1e-4, shrinkage=2.0) == {}


def test_zero_total_with_shrinkage_falls_back_to_the_prior(frames):
    w = weights(*frames, shrinkage=2.0, **ZERO_VIEWS)
    # only u2 gives evidence: p = Action 2/7, Drama 2/7, Sci-Fi 3/7; u1 has none, so w = p
    assert {g: v[1] for (u, g), v in w.items() if u == "u1"} == pytest.approx(
        {"Action": 2 / 7, "Drama": 2 / 7, "Sci-Fi": 3 / 7})
    assert w[("u2", "Sci-Fi")][1] == pytest.approx((3 + 2 * 3 / 7) / (7 + 2))


@pytest.mark.parametrize("opts", [
    {},
    {"multi_genre": "full"},
    {"rating_weighted": True, "event_weights": {"view": 1, "click": 0.5, "rate": 1, "purchase": 3}},
    {"half_life_days": 3.0, "shrinkage": 4.0},
    {"rating_weighted": True, "half_life_days": 7.0, "shrinkage": 2.0, "min_interactions": 3},
])
def test_numpy_twin_equals_spark(spark, opts):
    """The pandas twin that evaluation refits on a split gives the published Spark weights (1e-9)."""
    import numpy as np

    rng = np.random.default_rng(7)
    genres_ = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(40)],
                          "genres": [list(rng.choice(genres_, size=rng.integers(0, 3), replace=False)) for _ in range(40)]})
    n = 600
    hist = pd.DataFrame({
        "user_id": rng.choice([f"u{k}" for k in range(30)], n), "item_id": rng.choice(items.item_id, n),
        "event": rng.choice(["view", "click", "rate", "purchase"], n),
        "rating": np.where(rng.random(n) < 0.4, rng.integers(1, 6, n).astype(float), np.nan),
        "ts": pd.Timestamp("2026-11-22T23:00", tz="UTC") - pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s")})
    cfg = GenresConfig(**opts)
    spark_items = spark.createDataFrame(items)
    spark_hist = spark.createDataFrame(hist.assign(rating=hist.rating.astype(object).where(hist.rating.notna(), None)))
    ref = genres.user_genre_weights(spark_hist, genres.item_genres(spark_items, cfg.multi_genre), cfg, D).toPandas()
    twin = interest.user_genre_weights_pandas(hist, interest.item_genres_pandas(items, cfg.multi_genre), cfg, D)
    key = ["user_id", "genre"]
    ref, twin = ref.sort_values(key).reset_index(drop=True), twin.sort_values(key).reset_index(drop=True)
    assert len(ref) > 50 and ref[key].equals(twin[key])
    np.testing.assert_allclose(twin["weight"], ref["weight"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(twin["count"], ref["count"], rtol=1e-9, atol=1e-9)
    assert (twin["rank"].to_numpy() == ref["rank"].to_numpy()).all()


def test_pandas_weights_of_a_user_block_with_the_whole_totals_equal_the_whole():
    """user_genre_weights_pandas on one block of users, given genre_totals summed over every block:
    those users' rows as computed on the whole history (the shrinkage prior is the whole's mix)."""
    import numpy as np

    from genre_lib.config.settings import load_config
    from genre_lib.lake.user_blocks import block_of
    from genre_lib.ranking.interest import genre_totals, item_genres_pandas, user_genre_weights_pandas
    from tests.test_recommend import tiny_data

    inter, items, *_ = tiny_data(n_users=50, n=2000)
    gc = load_config(None, ["genres.shrinkage=5", "genres.half_life_days=7"]).genres
    memberships, day = item_genres_pandas(items, gc.multi_genre), dt.date(2026, 11, 22)
    whole = user_genre_weights_pandas(inter, memberships, gc, day)
    block = block_of(inter["user_id"], 3)
    totals = sum(genre_totals(inter[block == b], memberships, gc, day) for b in range(3))
    for b in range(3):
        part = user_genre_weights_pandas(inter[block == b], memberships, gc, day, totals)
        own = user_genre_weights_pandas(inter[block == b], memberships, gc, day)
        want = whole[whole["user_id"].isin(set(part["user_id"]))].reset_index(drop=True)
        pd.testing.assert_frame_equal(part[["user_id", "genre", "rank"]], want[["user_id", "genre", "rank"]])
        np.testing.assert_allclose(part["weight"], want["weight"], rtol=0, atol=1e-12)
        assert not np.allclose(own["weight"], want["weight"], rtol=0, atol=1e-6)  # a block's own prior differs
