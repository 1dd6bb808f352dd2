"""The hybrid ranker: genre formula, exact blocked top-k, blend bookkeeping, explanations,
pseudonyms, fitting on a split only, and the recommend/evaluate jobs on a tiny lake."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from genre_lib.config.settings import load_config
from genre_lib.lake.catalogue import Catalogue
from genre_lib.lake.pseudonym import pseudonymize
from genre_lib.ranking import blend, cf
from genre_lib.ranking import model as ranker
from genre_lib.ranking.interest import genre_weights
from genre_lib.ranking.topk import topk_rows


def fit(interactions, catalogue, cfg):
    """As evaluation refits: genre weights from the genres stage's rule (numpy twin) on the same rows."""
    weights = genre_weights(interactions, catalogue, cfg.genres, None)
    return ranker.fit(interactions, catalogue, weights, cfg.recommend, cfg.genres, cfg.clean.rating_max)


ROOT = Path(__file__).resolve().parent.parent
GENRES = ["Action", "Comedy", "Drama"]


def tiny_data(n_users=30, n_items=40, n=500, seed=0):
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{i:02d}" for i in range(n_items)],
                          "title": [f"Title {i}" for i in range(n_items)],
                          "description": "", "tags": None,
                          "genres": [[GENRES[i % 3]] + ([GENRES[(i + 1) % 3]] if i % 4 == 0 else []) for i in range(n_items)]})
    scores = items[["item_id", "genres"]].explode("genres").rename(columns={"genres": "genre"})
    scores = scores[scores["item_id"] != "i39"].assign(probability=1.0, source="labelled")  # i39: no scores
    emb = rng.normal(size=(n_items, 8)).astype(np.float32)
    embeddings = pd.DataFrame({"item_id": items["item_id"], "text_hash": "h", "model_id": "m", "dim": 8,
                               "vector": list(emb)})
    taste = rng.integers(0, 3, n_users)
    users = rng.integers(0, n_users, n)
    item = (taste[users] + 3 * rng.integers(0, n_items // 3, n)) % n_items
    inter = pd.DataFrame({"user_id": [f"u{u:02d}" for u in users], "item_id": [f"i{i:02d}" for i in item],
                          "event": rng.choice(["view", "rate"], n), "ts": pd.Timestamp("2026-11-01", tz="UTC")
                          + pd.to_timedelta(rng.integers(0, 20 * 86400, n), unit="s")})
    inter["rating"] = np.where(inter["event"] == "rate", rng.integers(1, 6, n).astype(float), np.nan)
    inter = inter.drop_duplicates(["user_id", "item_id", "event", "ts"]).reset_index(drop=True)
    return inter, items, scores, embeddings


@pytest.fixture
def cfg():
    return load_config(None, ["recommend.top_n=5", "recommend.execution.block_users=7", "recommend.weights.genre=1",
                              "recommend.weights.content=0.5", "recommend.weights.cf=2", "recommend.weights.popularity=0.3"])


@pytest.fixture
def fitted(cfg):
    inter, items, scores, emb = tiny_data()
    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]], embeddings=emb)
    return fit(inter, cat, cfg), inter


def test_genre_weights_follow_the_seed_formula(cfg):
    inter = pd.DataFrame({"user_id": ["a", "a", "a"], "item_id": ["x", "y", "z"], "event": "view",
                          "ts": pd.Timestamp("2026-11-01", tz="UTC")})
    items = pd.DataFrame({"item_id": ["x", "y", "z"], "title": "t", "genres": [["Action"], ["Action", "Drama"], []]})
    scores = pd.DataFrame({"item_id": ["x", "y", "y"], "genre": ["Action", "Action", "Drama"], "probability": [1.0, 1.0, 1.0]})
    cfg = load_config(None, ["recommend.genre.gamma=0.25", "genres.multi_genre=split"])
    model = fit(inter, Catalogue(items=items, item_genre_scores=scores), cfg)
    # f(a, Action) = 1 + 1/2, f(a, Drama) = 1/2 (z has no genres) -> w = 0.75, 0.25
    assert model.genres == ["Action", "Drama"]
    np.testing.assert_allclose(model.user_genre[0], [0.75, 0.25])
    # R = sum_c w s / sum_c w; a missing (item, genre) score is gamma: x lacks Drama, z has none
    r = ranker.genre_r(model, np.zeros(3, int), np.arange(3))
    np.testing.assert_allclose(r, [0.75 + 0.25 * 0.25, 1.0, 0.25], rtol=0, atol=1e-12)


@pytest.mark.parametrize("n,k,chunk", [(1000, 10, 64), (130, 7, 16), (50, 10, 64), (5, 10, 64)])
def test_topk_rows_is_exact(n, k, chunk):
    s = torch.randn(9, n)
    v, i = topk_rows(s, k, chunk)
    ref = torch.topk(s, min(k, n), dim=1)
    assert torch.equal(v, ref.values)
    assert torch.equal(torch.gather(s, 1, i), ref.values)


def test_block_topk_matches_full_ranking_and_drops_seen(fitted):
    model, _ = fitted
    w = {"genre": 1.0, "content": 0.5, "cf": 2.0, "popularity": 0.3}
    top = blend.recommend(model, w, 5, block_users=4)
    full = sum(wt * blend._standardise(blend.component_block(model, c, np.arange(model.n_users))) for c, wt in w.items())
    seen = model.seen.toarray() > 0
    full[torch.from_numpy(seen)] = float("-inf")
    ref = torch.topk(full, 5, dim=1)
    got = np.zeros((model.n_users, 5))
    got[top.users, top.rank - 1] = top.score
    np.testing.assert_allclose(got, ref.values.numpy(), rtol=1e-5, atol=1e-5)
    assert not seen[top.users, top.items].any()
    # the per-component columns add up to the score
    total = sum(w[c] * top.components[c] for c in w)
    np.testing.assert_allclose(total, top.score, rtol=1e-4, atol=1e-4)


def test_recommend_many_ranks_each_blend_as_recommend_alone(fitted):
    """An evaluation's variants ranked in one pass equal one recommend call each (items, order,
    scores, components), with candidates and a gathered scorer too."""
    model, _ = fitted
    blends = {"blend": {"genre": 1.0, "content": 0.5, "cf": 2.0}, "cf": {"cf": 1.0},
              "blend-cf": {"genre": 1.0, "content": 0.5}, "popularity": {"popularity": 1.0}}
    users, cands = np.arange(3, model.n_users, 2), np.arange(0, model.n_items, 3)
    many = blend.recommend_many(model, blends, 4, 5, users=users, candidates=cands, gather=("popularity",))
    assert list(many) == list(blends)
    for name, w in blends.items():
        one = blend.recommend(model, w, 4, 5, users=users, candidates=cands, gather=("popularity",))
        got = many[name]
        assert np.array_equal(got.users, one.users) and np.array_equal(got.items, one.items)
        assert np.array_equal(got.rank, one.rank) and np.array_equal(got.score, one.score)
        assert set(got.items) <= set(cands)
        for c in ranker.COMPONENTS:
            np.testing.assert_array_equal(got.components[c], one.components[c])
        assert not np.isnan(got.components["popularity"]).any()
    with pytest.raises(ValueError, match="'none'"):
        blend.recommend_many(model, {"none": {"genre": 0.0}}, 4, 5)


def test_blocks_shrink_to_the_byte_budget_with_the_same_lists(fitted, monkeypatch):
    """Past BLOCK_BYTES the ranking block holds fewer users than block_users; the lists are the same."""
    model, _ = fitted
    w = {"genre": 1.0, "content": 0.5, "cf": 2.0, "popularity": 0.3}
    whole = blend.recommend(model, w, 4, 1000)
    calls = []
    real = blend.component_block
    monkeypatch.setattr(blend, "component_block", lambda m, c, rows: calls.append(len(rows)) or real(m, c, rows))
    monkeypatch.setattr(blend, "BLOCK_BYTES", 4 * model.n_items * (len(w) + 4) * 3)  # 3 users a block
    assert blend.block_rows(1000, model.n_items, len(w) + 4) == 3
    small = blend.recommend(model, w, 4, 1000)
    assert max(calls) == 3 and len(calls) == len(w) * -(-model.n_users // 3)
    assert np.array_equal(small.users, whole.users) and np.array_equal(small.items, whole.items)
    np.testing.assert_allclose(small.score, whole.score, rtol=1e-5, atol=1e-6)
    assert blend.block_rows(2, model.n_items, 8) == 2 and blend.block_rows(10, 10**12, 8) == 1


def test_recommendations_table_and_reasons(fitted, cfg):
    model, _ = fitted
    top = blend.recommend(model, cfg.recommend.weights, 5, 7)
    frame = blend.recommendations_frame(model, top, cfg.recommend)
    assert frame.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    first = frame.iloc[0]
    assert first["reason"].split(" | ")[0] in ranker.COMPONENTS
    assert "like: Title " in first["reason"]
    assert frame["reason"].str.contains("genre: ").mean() > 0.5
    import pyarrow as pa

    from genre_lib.lake.tables import schema
    pa.Table.from_pandas(frame[schema("recommendations").names], schema=schema("recommendations"), preserve_index=False)


def test_pseudonyms_are_keyed_and_stable(monkeypatch, fitted, cfg):
    model, _ = fitted
    rc = cfg.recommend.model_copy(update={"privacy": cfg.recommend.privacy.model_copy(update={"pseudonymize_users": True})})
    top = blend.recommend(model, rc.weights, 3, 7)
    monkeypatch.delenv(rc.privacy.pseudonym_key_env, raising=False)
    with pytest.raises(RuntimeError, match=rc.privacy.pseudonym_key_env):
        blend.recommendations_frame(model, top, rc)
    monkeypatch.setenv(rc.privacy.pseudonym_key_env, "k1")
    a = blend.recommendations_frame(model, top, rc)["user_id"]
    assert not set(a) & set(model.user_ids) and a.str.len().eq(32).all()
    assert (pseudonymize(["u01"], rc.privacy.pseudonym_key_env) == pseudonymize(["u01"], rc.privacy.pseudonym_key_env)).all()
    monkeypatch.setenv(rc.privacy.pseudonym_key_env, "k2")
    assert not set(blend.recommendations_frame(model, top, rc)["user_id"]) & set(a)


def test_fit_sees_only_the_training_split(cfg):
    from genre_lib.protocol.splits import temporal_split

    inter, items, scores, emb = tiny_data()
    train, test = temporal_split(inter, 0.2)
    cat = Catalogue(items=items, item_genre_scores=scores, embeddings=emb)
    model = fit(train, cat, cfg)
    full = fit(inter, cat, cfg)
    u = pd.Index(model.user_ids).get_indexer(test["user_id"])
    i = pd.Index(model.item_ids).get_indexer(test["item_id"])
    pairs = set(zip(train["user_id"], train["item_id"]))
    fresh = np.array([(a, b) not in pairs for a, b in zip(test["user_id"], test["item_id"])])
    assert (np.asarray(model.seen[u[fresh], i[fresh]]).ravel() == 0).all()
    assert model.seen.nnz == len(pairs) < full.seen.nnz
    assert not np.allclose(model.user_genre, full.user_genre[pd.Index(full.user_ids).get_indexer(model.user_ids)])


def test_cf_learns_co_occurrence():
    # two item groups consumed together: a user of group A gets the rest of A first
    rows = [(f"u{u}", f"a{j}") for u in range(20) for j in range(5) if (u + j) % 5] + \
           [(f"v{u}", f"b{j}") for u in range(20) for j in range(5) if (u + j) % 5]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id"])
    cfg = load_config(None, ["recommend.cf.reg=1"])
    model = fit(inter, Catalogue(), cfg)
    top = blend.recommend(model, {"cf": 1.0}, 1, 16)
    got = model.item_ids[top.items]
    assert all(i[0] == u[0].replace("u", "a").replace("v", "b") for u, i in zip(model.user_ids[top.users], got))


def test_item_knn_is_the_cosine_top_k_and_scores_every_item_past_cf_max_items():
    rng = np.random.default_rng(3)
    x = sp.csr_matrix((rng.random((60, 25)) < 0.2).astype(np.float32))
    dense = x.toarray()
    norms = np.linalg.norm(dense, axis=0)
    cos = dense.T @ dense / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(cos, 0)
    knn = cf.item_knn(x, neighbours=4, block=7).toarray()  # blocks: 7, 7, 7, 4 items
    for i in range(25):
        kept = np.flatnonzero(knn[i])
        assert len(kept) <= 4 and np.allclose(knn[i, kept], cos[i, kept], atol=1e-6)
        assert cos[i, kept].min(initial=np.inf) >= np.sort(cos[i])[-4] - 1e-6  # the 4 largest (ties aside)

    inter, items, scores, emb = tiny_data()
    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]], embeddings=emb)
    big = fit(inter, cat, load_config(None, ["recommend.cf.max_items=10"]))  # 40 items with interactions > 10
    assert big.ease is None and big.knn is not None and len(big.ease_items) > 10
    top = blend.recommend(big, {"cf": 1.0}, 5, 7)
    assert len(np.unique(top.items)) > 10  # cf reaches past the 10 most popular items
    small = fit(inter, cat, load_config(None, []))
    assert small.knn is None and small.ease is not None


def test_cf_recency_weights_the_latest_items():
    # x_u weights: newest distinct item 1, the one before 0.5^(1/h), ...; a repeat counts at its latest ts
    t = pd.Timestamp("2026-11-01", tz="UTC")
    inter = pd.DataFrame({"user_id": ["a", "a", "a", "a", "b"], "item_id": ["x", "y", "z", "x", "y"],
                          "ts": [t, t + pd.Timedelta(1, "h"), t + pd.Timedelta(2, "h"), t + pd.Timedelta(3, "h"), t]})
    m = cf.recency_matrix(inter, pd.Index(["a", "b"]), pd.Index(["x", "y", "z"]), half_life=1.0).toarray()
    np.testing.assert_allclose(m, [[1.0, 0.25, 0.5], [0.0, 1.0, 0.0]])
    # in the model: the recency only changes x_u, not B; off by default
    inter2, items, scores, emb = tiny_data()
    plain = fit(inter2, Catalogue(), load_config(None, []))
    recent = fit(inter2, Catalogue(), load_config(None, ["recommend.cf.recency_half_life=2"]))
    assert plain.cf_input is None and recent.cf_input.nnz == plain.seen.nnz
    np.testing.assert_array_equal(plain.ease, recent.ease)
    rows = np.arange(5)
    assert not torch.allclose(blend.component_block(plain, "cf", rows), blend.component_block(recent, "cf", rows))
    with pytest.raises(Exception):
        load_config(None, ["recommend.cf.recency_half_life=0"])


def test_cf_rating_power_weights_input_and_fit():
    # (rating / rating_max) ** a per distinct item, its highest rating when rated twice, 1 without a rating
    inter = pd.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": ["x", "y", "x", "z"],
                          "rating": [1.0, 4.0, 5.0, np.nan]})
    m = cf.rating_matrix(inter, pd.Index(["a", "b"]), pd.Index(["x", "y", "z"]), power=0.5, rating_max=5.0).toarray()
    np.testing.assert_allclose(m, [[1.0, np.sqrt(0.8), 0.0], [0.0, 0.0, 1.0]], rtol=1e-6)
    # in the model: B is fit on the weighted matrix and x_u reads it; recency multiplies on top
    inter2, items, scores, emb = tiny_data()
    plain = fit(inter2, Catalogue(), load_config(None, []))
    rated = fit(inter2, Catalogue(), load_config(None, ["recommend.cf.rating_power=1"]))
    both = fit(inter2, Catalogue(), load_config(None, ["recommend.cf.rating_power=1",
                                                                "recommend.cf.recency_half_life=2"]))
    assert plain.cf_rating is None and rated.cf_input is rated.cf_rating
    assert not np.allclose(plain.ease, rated.ease)
    np.testing.assert_array_equal(rated.ease, both.ease)
    assert (both.cf_input.toarray() <= rated.cf_input.toarray() + 1e-7).all()
    assert (both.cf_input != rated.cf_input).nnz > 0
    with pytest.raises(Exception):
        load_config(None, ["recommend.cf.rating_power=-1"])


# --------------------------------------------------------------------------------------------
# jobs on a tiny lake
# --------------------------------------------------------------------------------------------
def test_recommend_and_evaluate_jobs(tmp_path):
    from genre_lib.lake.storage import Lake

    ds = "2026-11-22"
    lake = Lake(str(tmp_path / "lake"))
    inter, items, scores, emb = tiny_data()
    man = {"run_id": "test", "config_hash": "x"}
    lake.write_pandas("interactions_clean", ds, inter, man)
    lake.write_pandas("items_clean", ds, items, man)
    lake.write_pandas("item_genre_scores", ds, scores, man)
    lake.write_pandas("item_genres", ds, scores.rename(columns={"probability": "score"}), man)
    lake.write_pandas("item_embeddings", ds, emb, man)
    cfg = load_config(None, [])
    weights = genre_weights(inter, Catalogue(items=items), cfg.genres, pd.Timestamp(ds).date())
    lake.write_pandas("user_genre_weights", ds, weights, man)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PATH": "/usr/bin:/bin",
           "JAVA_HOME": __import__("os").environ.get("JAVA_HOME", ""), "HOME": str(tmp_path)}
    sets = ["--set", f"lake.root={lake.root}", "--set", "spark.master=local[1]", "--set", "spark.shuffle_partitions=2",
            "--set", "recommend.top_n=5", "--set", "mlflow.experiment=test-rec"]
    for job in ("recommend", "evaluate"):
        r = subprocess.run([sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--run-date", ds, "--run-id", "t1", *sets],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    table = lake.read_pandas("recommendations", ds)
    assert len(table) == 5 * inter["user_id"].nunique()
    assert lake.manifest("recommendations", ds)["schema_version"] == 3
    assert table["variant"].isna().all()  # no ab section: no A/B
    # genre_r is the seed's R(u,i), recomputed from the two published tables (gamma = 0 where missing)
    published_w, published_s = lake.read_pandas("user_genre_weights", ds), lake.read_pandas("item_genre_scores", ds)
    sample = table[table["user_id"].isin(sorted(table["user_id"].unique())[::3])][["user_id", "item_id", "genre_r"]]
    pairs = sample.merge(published_w[["user_id", "genre", "weight"]], on="user_id").merge(
        published_s[["item_id", "genre", "probability"]], on=["item_id", "genre"], how="left").fillna({"probability": 0.0})
    r = pairs.assign(ws=pairs["weight"] * pairs["probability"]).groupby(["user_id", "item_id"]).agg(
        ws=("ws", "sum"), w=("weight", "sum"))
    expect = (r["ws"] / r["w"]).rename("expect").reset_index()
    got = sample.merge(expect, on=["user_id", "item_id"])
    assert len(got) == len(sample) > 20 and got["expect"].nunique() > 3
    np.testing.assert_allclose(got["genre_r"], got["expect"], rtol=0, atol=1e-9)
    assert table["reason"].str.len().gt(0).all()
    with open(lake.files("evaluation", ds)[0]) as f:
        payload = json.load(f)
    assert payload["primary"] == "blend"
    assert {"blend", "genre", "content", "cf", "popularity", "blend-cf"} <= set(payload["models"])
    assert {"ndcg@10", "precision@10", "recall@10", "map@10", "hit_rate@10", "coverage@10", "diversity@10",
            "novelty@10"} <= set(payload["models"]["blend"])
    # every model entry is metric name -> number; the blend weights of each variant sit apart
    assert all(isinstance(v, (int, float)) for m in payload["models"].values() for v in m.values())
    assert set(payload["variants"]) == set(payload["models"]) and "cf" not in payload["variants"]["blend-cf"]

    import mlflow
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["test-rec"], filter_string="tags.stage = 'evaluate'")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    arts = [a.path for a in mlflow.MlflowClient().list_artifacts(runs.iloc[0]["run_id"], "charts")]
    assert any(p.endswith("ndcg_at_10.png") for p in arts)


def test_cold_items_protocol_ranks_only_held_out_items():
    """cold_items: cold items lose all their interactions and their labels (rescore gives their genre
    scores); every model ranks only them; random and genre-labels sit beside the blend."""
    from genre_lib.evaluation.offline import evaluate
    from genre_lib.protocol.splits import cold_item_split

    inter, items, scores, emb = tiny_data(n_users=40, n=900)
    cfg = load_config(None, ["eval.protocol=cold_items", "eval.cold_item_share=0.25", "eval.k=5",
                             "recommend.weights.genre=1", "recommend.weights.content=0.5"])
    train, test, cold = cold_item_split(inter, 0.25, cfg.eval.seed)
    assert 4 <= len(cold) <= 20 and not set(train.item_id) & set(cold) and set(test.item_id) <= set(cold)
    asked = []

    def rescore(cold_ids):  # a "classifier" that knows nothing about the cold items: uniform scores
        asked.append(set(cold_ids))
        hidden = scores["item_id"].isin(set(cold_ids))
        flat = pd.DataFrame({"item_id": np.repeat(sorted(set(cold_ids)), len(GENRES)),
                             "genre": GENRES * len(set(cold_ids)), "probability": 1 / len(GENRES)})
        return pd.concat([scores[~hidden][["item_id", "genre", "probability"]], flat], ignore_index=True)

    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]], embeddings=emb)
    payload = evaluate(inter, cat, cfg, rescore=rescore)
    assert asked == [set(cold)] and payload["cold_items"] == len(cold)
    models = payload["models"]
    assert {"blend", "genre", "content", "random", "genre-labels"} <= set(models)
    assert not any(n.startswith("blend-") for n in models)
    assert all(m["coverage@5"] <= 1.0 for m in models.values())
    # the labels scorer sees through the uniform "predictions": it ranks the users' genres first
    assert models["genre-labels"]["ndcg@5"] > models["genre"]["ndcg@5"]
    assert models["genre-labels"]["ndcg@5"] > models["random"]["ndcg@5"]


@pytest.mark.parametrize("sets", [[], ["recommend.cf.max_items=10"], ["recommend.genre.scorer=popularity"],
                                  ["recommend.genre.scorer=mixture"],
                                  ["recommend.cf.rating_power=1", "recommend.cf.recency_half_life=3"]])
def test_fit_in_user_blocks_equals_one_fit(sets):
    """fit_items over user blocks, then fit_users per block: each user's scores and list as one fit on
    everything gives (EASE, the kNN past cf.max_items, rating and recency inputs, the genre forms)."""
    from genre_lib.lake.user_blocks import block_of

    cfg = load_config(None, ["recommend.weights.genre=1", "recommend.weights.content=0.5", "recommend.weights.cf=2",
                             "recommend.weights.popularity=0.3", *sets])
    rc, gc = cfg.recommend, cfg.genres
    inter, items, scores, emb = tiny_data()
    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]], embeddings=emb)
    weights = genre_weights(inter, cat, gc, None)
    whole = ranker.fit(inter, cat, weights, rc, gc, cfg.clean.rating_max)
    block = block_of(inter["user_id"], 3)
    parts = [inter[block == b] for b in range(3)]
    assert all(len(p) for p in parts)
    side = ranker.fit_items(lambda: iter(parts), cat, rc, cfg.clean.rating_max)
    assert side.n_users == 0 and (side.knn is not None) == bool(sets and "cf.max_items" in sets[0])
    np.testing.assert_array_equal(side.popularity, whole.popularity)
    np.testing.assert_array_equal(side.item_users, np.asarray(whole.seen.sum(0)).ravel())
    for b, part in enumerate(parts):
        m = ranker.fit_users(side, part, weights, rc, gc, cfg.clean.rating_max)
        rows = pd.Index(whole.user_ids).get_indexer(m.user_ids)
        assert m.n_users == part["user_id"].nunique() and (rows >= 0).all()
        for c in ("genre", "content", "cf", "popularity"):
            np.testing.assert_allclose(blend.component_block(m, c, np.arange(m.n_users)).numpy(),
                                       blend.component_block(whole, c, rows).numpy(), rtol=1e-5, atol=1e-5, err_msg=c)
        got, want = blend.recommend(m, rc.weights, 5, 7), blend.recommend(whole, rc.weights, 5, 7, users=rows)
        np.testing.assert_array_equal(m.item_ids[got.items], whole.item_ids[want.items])
        np.testing.assert_array_equal(m.user_ids[got.users], whole.user_ids[want.users])
        np.testing.assert_allclose(got.score, want.score, rtol=1e-5, atol=1e-5)
