"""The learned second stage (genre_lib/ranking/rerank.py) on tiny data: aligned finite features, `off` as
without a re-ranker, the auto decision recorded, reasons that name features, labels from the inner
holdout only (never the test split), and the stage's MLflow record."""
import numpy as np
import pandas as pd
import pytest

from genre_lib.config.settings import ConfigError, load_config
from genre_lib.evaluation.offline import evaluate
from genre_lib.lake.catalogue import Catalogue
from genre_lib.protocol.splits import new_items, split
from genre_lib.ranking import blend, rerank
from genre_lib.ranking import model as ranker
from genre_lib.ranking.interest import genre_weights
from genre_lib.stages import recommend as rec
from tests.test_recommend import tiny_data

SMALL = ["rerank.candidates=30", "rerank.n_estimators=20", "rerank.early_stopping_rounds=5",
         "rerank.min_child_samples=5", "rerank.threads=1", "recommend.top_n=5", "eval.k=5"]


@pytest.fixture(scope="module")
def data():
    inter, items, scores, emb = tiny_data(n_users=60, n_items=80, n=2000)
    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]], embeddings=emb)
    return inter, cat


def cfg_with(*overrides):
    return load_config(None, [*SMALL, *overrides])


def full_model(inter, cat, cfg):
    return ranker.fit(inter, cat, genre_weights(inter, cat, cfg.genres, None), cfg.recommend, cfg.genres, 5.0)


def test_config_reads_yaml_on_off_and_refuses_unknown_modes():
    assert load_config(None, ["rerank.enabled=on"]).rerank.enabled == "on"  # YAML 1.1: a bare on is True
    assert load_config(None, ["rerank.enabled=off"]).rerank.enabled == "off"
    assert load_config(None, []).rerank.enabled == "off"
    with pytest.raises(ConfigError, match="rerank.enabled"):
        load_config(None, ["rerank.enabled=maybe"])


def test_gathering_every_scorer_leaves_the_blend_unchanged(data):
    inter, cat = data
    cfg = cfg_with()
    model = full_model(inter, cat, cfg)
    a = blend.recommend(model, cfg.recommend.weights, 30, 7)
    b = blend.recommend(model, cfg.recommend.weights, 30, 7, gather=rerank.COMPONENTS)
    for f in ("users", "items", "rank", "score"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    for c in a.weights:
        np.testing.assert_array_equal(a.components[c], b.components[c])
    assert "popularity" not in a.weights and np.isfinite(b.components["popularity"]).all()


def test_features_are_finite_and_aligned_with_the_candidates(data):
    inter, cat = data
    cfg = cfg_with()
    model = full_model(inter, cat, cfg)
    top, x = rerank.candidates(model, inter, cfg.recommend, cfg)
    assert list(x.columns) == rerank.FEATURES and len(x) == len(top.users) == 30 * model.n_users
    assert np.isfinite(x.to_numpy()).all() and (x.dtypes == np.float32).all()
    np.testing.assert_array_equal(x["blend_rank"], top.rank)
    np.testing.assert_allclose(x["z_cf"], top.components["cf"], rtol=1e-6)
    np.testing.assert_allclose(x["genre_r"], ranker.genre_r(model, top.users, top.items), rtol=1e-6)
    first = np.flatnonzero(top.rank == 1)
    assert (x["rank_cf"].to_numpy()[first] >= 1).all() and x["rank_cf"].max() == 30
    # the sequence features compare with the user's newest items: a user's newest item is in `last`
    side = rerank.side_data(model, inter, 5)
    newest = inter.sort_values("ts").groupby("user_id")["item_id"].last()
    u = pd.Index(model.user_ids).get_indexer(newest.index)
    assert (model.item_ids[side.last[u, 0]] == newest.to_numpy()).all()
    # user and item facts land on their rows
    act = np.asarray(model.seen.sum(1)).ravel()
    assert np.corrcoef(x["user_activity"], act[top.users])[0, 1] > 0.9


def test_training_labels_come_from_the_inner_holdout_only(data):
    inter, cat = data
    cfg = cfg_with("rerank.enabled=on")
    train, test = split(inter, "temporal", 0.2, 42)
    d = rerank.training_set(train, cat, cfg, None)
    inner, holdout = split(train, "temporal", 0.2, 42)
    pos = pd.DataFrame({"user_id": d.model.user_ids[d.top.users[d.y > 0]],
                        "item_id": d.model.item_ids[d.top.items[d.y > 0]]})
    assert len(pos) > 10
    held = set(zip(*new_items(holdout, inner)[["user_id", "item_id"]].to_numpy().T))
    assert set(zip(pos["user_id"], pos["item_id"])) <= held
    # the first stage of the training rows saw the inner train only
    assert d.model.seen.sum() == inner[["user_id", "item_id"]].drop_duplicates().shape[0]
    # fitting and early stopping slices are disjoint users; the validation slice holds the latter
    fit_u, stop_u = set(d.top.users[d.fitting]), set(d.top.users[d.stopping])
    assert fit_u and stop_u and not fit_u & stop_u and stop_u <= set(d.val_users)


def test_evaluation_fits_the_reranker_on_the_training_split_only(data, monkeypatch):
    inter, cat = data
    seen = []
    real = rerank.training_set
    monkeypatch.setattr(rerank, "training_set", lambda history, *a, **k: seen.append(history) or real(history, *a, **k))
    payload = evaluate(inter, cat, cfg_with("rerank.enabled=on"))
    train, test = split(inter, "temporal", 0.2, 42)
    assert len(seen) == 1 and len(seen[0]) == len(train)
    assert not set(seen[0].index) & set(test.index)
    assert payload["primary"] == "rerank"
    groups = {f"rerank-{g}" for g in rerank.GROUPS}
    assert {"blend", "rerank", *groups} <= set(payload["models"])
    assert set(payload["models"]["rerank"]) == set(payload["models"]["blend"])  # same keys
    assert set(payload["variants"]) == set(payload["models"])
    assert payload["rerank_decision"]["kept"] and payload["rerank_decision"]["reason"] == "enabled: on"


def test_auto_records_the_decision_and_keeps_only_a_gain(data):
    inter, cat = data
    rr, _ = rerank.fit(inter, cat, cfg_with("rerank.enabled=auto"), None)
    d = rr.decision
    assert d["enabled"] == "auto" and d["metric"] == "ndcg@5" and set(d["validation"]) == {"blend", "rerank"}
    assert d["difference"] == pytest.approx(d["validation"]["rerank"] - d["validation"]["blend"])
    assert d["kept"] == (d["difference"] > 2 * d["se"])  # a gain beyond the validation slice's noise
    assert d["reason"].startswith("auto: re-ranker " + ("beats" if d["kept"] else "does not beat"))
    payload = evaluate(inter, cat, cfg_with("rerank.enabled=auto", "rerank.ablations=false"))
    kept = payload["rerank_decision"]["kept"]
    assert ("rerank" in payload["models"]) == kept and payload["primary"] == ("rerank" if kept else "blend")


def test_off_changes_nothing_in_evaluation(data):
    inter, cat = data
    off = evaluate(inter, cat, cfg_with("rerank.enabled=off"))
    assert off["primary"] == "blend" and "rerank_decision" not in off
    assert not any(n.startswith("rerank") for n in off["models"])


def test_reranked_lists_and_their_reasons(data):
    inter, cat = data
    cfg = cfg_with("rerank.enabled=on")
    rr, _ = rerank.fit(inter, cat, cfg, None)
    model = full_model(inter, cat, cfg)
    top = rr.rank(model, inter, cfg.recommend)
    frame = blend.recommendations_frame(model, top, cfg.recommend)
    assert len(frame) == 5 * model.n_users
    assert (frame.groupby("user_id")["rank"].apply(list) == pd.Series([[1, 2, 3, 4, 5]] * model.n_users,
                                                                     index=sorted(model.user_ids))).all()
    assert (frame.groupby("user_id")["score"].diff().dropna() <= 1e-12).all()  # the trees' score, descending
    assert frame["popularity_score"].isna().all()  # unused by the blend: null, as without a re-ranker
    labels = set(rerank.LABELS.values()) | {"blend"}
    for reason in frame["reason"]:
        head = reason.split(" | ")[0]
        assert head.startswith("rerank: ") and set(head[len("rerank: "):].split(", ")) <= labels
    # reasons name the features with the largest positive contribution of each row
    x = rerank.candidates(model, inter, cfg.recommend, cfg)[1]
    contrib = rr.booster.predict(x.iloc[:1].to_numpy(), pred_contrib=True)[0, :-1]
    assert contrib.shape == (len(rerank.FEATURES),)


def test_recommend_stage_off_is_the_blend_and_on_logs_the_model(data, tmp_path, mlflow_uri):
    import mlflow

    from genre_lib.lake.storage import Lake
    from genre_lib.orchestration.jobrun import JobContext

    inter, cat = data
    ds = "2026-11-22"
    lake = Lake(str(tmp_path / "lake"))
    man = {"run_id": "test", "config_hash": "x"}
    lake.write_pandas("interactions_clean", ds, inter, man)
    lake.write_pandas("items_clean", ds, cat.items, man)
    lake.write_pandas("item_genre_scores", ds, cat.item_genre_scores.assign(source="labelled"), man)
    lake.write_pandas("item_embeddings", ds, cat.embeddings, man)
    base = cfg_with(f"lake.root={lake.root}")
    weights = genre_weights(inter, cat, base.genres, pd.Timestamp(ds).date())
    lake.write_pandas("user_genre_weights", ds, weights, man)

    rec.run(JobContext.of("recommend", cfg_with(f"lake.root={lake.root}", "rerank.enabled=off"), ds))
    off = lake.read_pandas("recommendations", ds)
    history = lake.read_pandas("interactions_clean", ds)
    model = ranker.fit(history, Catalogue.from_lake(lake, ds), weights, base.recommend, base.genres, 5.0)
    plain = blend.recommendations_frame(model, blend.recommend(model, base.recommend.weights, 5, base.recommend.execution.block_users),
                                      base.recommend)
    pd.testing.assert_frame_equal(off[plain.columns].reset_index(drop=True), plain.reset_index(drop=True),
                                  check_dtype=False)

    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment("genre-nightly")  # artifacts in tmp_path (the fixture's experiment)
    with mlflow.start_run() as run:
        metrics = rec.run(JobContext.of("recommend", cfg_with(f"lake.root={lake.root}", "rerank.enabled=on"), ds))
    on = lake.read_pandas("recommendations", ds)
    assert metrics["rerank_kept"] == 1.0 and len(on) == len(off)
    assert on["reason"].str.startswith("rerank: ").all()
    client = mlflow.MlflowClient()
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "rerank")}
    assert {"rerank/decision.json", "rerank/feature_importance.png"} <= arts
    assert client.get_run(run.info.run_id).data.tags["rerank_decision"] == "enabled: on"
    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert logged and logged[0].name == "reranker"
    model_info = mlflow.models.get_model_info(f"models:/{logged[0].model_id}")
    assert [c.name for c in model_info.signature.inputs.inputs] == rerank.FEATURES
    import lightgbm
    reqs = open(mlflow.pyfunc.get_model_dependencies(f"models:/{logged[0].model_id}")).read()
    assert f"lightgbm=={lightgbm.__version__}" in reqs

    # a rerun of the night with a weekly cadence ranks with the trees just registered: same table
    with mlflow.start_run():
        again = rec.run(JobContext.of("recommend", cfg_with(f"lake.root={lake.root}", "rerank.enabled=on",
                                                            "rerank.retrain_days=7"), ds))
    assert again["rerank_reused"] == 1.0 and "rerank_fit_seconds" not in again
    pd.testing.assert_frame_equal(lake.read_pandas("recommendations", ds), on)


def test_ab_variants_are_scored_on_their_reranked_lists(data):
    """With the re-ranker kept, variants_ab scores what the recommend stage would publish: each arm's
    own candidates re-ordered by the trees, not the arm's blend."""
    from genre_lib.protocol.metrics import ranking_metrics
    from genre_lib.ranking import ab

    inter, cat = data
    two = ("ab={salt: s1, variants: [{name: control, share: 0.5}, "
           "{name: genre-heavy, share: 0.5, overrides: {recommend.weights.genre: 1.5}}]}")
    cfg = cfg_with("rerank.enabled=on", "rerank.ablations=false", two)
    block = evaluate(inter, cat, cfg)["variants_ab"]
    train, held = split(inter, "temporal", cfg.eval.holdout_share, cfg.eval.seed)
    test = new_items(held, train)
    rankers, _ = rerank.evaluation_fit(train, cat, cfg, None)
    model = full_model(train, cat, cfg)
    control = np.flatnonzero((ab.assign(model.user_ids, cfg.ab) == "control") & pd.Index(model.user_ids).isin(set(test.user_id)))
    truth = test[test.user_id.isin(set(model.user_ids[control]))]
    reranked = ranking_metrics(truth, rerank.evaluation_rank(rankers, model, train, control, cfg)["rerank"], 5)
    top = blend.recommend(model, cfg.recommend.weights, 5, 7, users=control)
    plain = ranking_metrics(truth, top.frame(model), 5)
    assert reranked["ndcg@5"] != pytest.approx(plain["ndcg@5"], abs=1e-9)  # the two lists differ here
    assert block["control"]["users"] == reranked["users"]
    for m in ("ndcg@5", "precision@5", "recall@5", "map@5"):
        assert block["control"][m] == pytest.approx(reranked[m], abs=1e-12)


def test_path_contributions_sum_to_the_prediction_and_name_the_reasons(data):
    inter, cat = data
    cfg = cfg_with("rerank.enabled=on", "rerank.n_estimators=40", "rerank.early_stopping_rounds=40")
    rr, _ = rerank.fit(inter, cat, cfg, None)
    assert rr.booster.num_trees() > 5
    model = full_model(inter, cat, cfg)
    cand, x = rerank.candidates(model, inter, cfg.recommend, cfg)
    contrib = rerank.path_contributions(rr.booster, x.to_numpy(), 1)
    assert contrib.shape == (len(x), len(rerank.FEATURES) + 1)
    np.testing.assert_allclose(contrib.sum(1), rr.predict(x), rtol=1e-9, atol=1e-9)
    unused = rr.booster.feature_importance("split") == 0
    assert unused.any() and (contrib[:, :-1][:, unused] == 0).all()  # only features the trees split on
    assert np.ptp(contrib[:, -1]) == 0  # the base value is the same for every row
    # the reason of a listed item names its largest positive contributor
    top = rr.rank(model, inter, cfg.recommend)
    row = pd.Index(list(zip(cand.users, cand.items))).get_indexer(list(zip(top.users, top.items)))
    c = contrib[row]
    for j in range(len(top.users)):
        best = int(np.argmax(c[j, :-1]))
        head = top.reasons[j].split(" | ")[0]
        assert (rerank.LABELS[rerank.FEATURES[best]] in head) if c[j, best] > 0 else head == "rerank: blend"


def test_fast_feature_paths_match_the_general_ones(monkeypatch):
    from genre_lib.ranking import rerank_features as rf

    rng = np.random.default_rng(3)
    vec = rng.normal(size=(50, 8)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    items, last = rng.integers(0, 50, 400), rng.integers(-1, 50, (400, 4))
    table = rf._slot_cos(vec, items, last)
    monkeypatch.setattr(rf, "_TABLE_ENTRIES", 0)
    np.testing.assert_allclose(table, rf._slot_cos(vec, items, last), atol=1e-6)
    users = np.repeat(np.arange(40), 10)  # candidates: users in runs of equal length
    v = rng.integers(0, 4, 400).astype(float)  # ties: broken by row order
    v[rng.integers(0, 400, 30)] = np.nan
    runs = rf._rank_within(users, v)
    perm = rng.permutation(400)  # shuffled rows: the general path
    general = np.empty(400)
    general[perm] = rf._rank_within(users[perm], v[perm])
    order = np.lexsort((np.arange(400), -np.nan_to_num(v, nan=-np.inf), users))
    expect = np.empty(400)
    expect[order] = np.tile(np.arange(1, 11), 40)
    np.testing.assert_array_equal(runs, expect)
    assert set(general.astype(int)) == set(range(1, 11)) and (np.sort(general) == np.sort(expect)).all()


def test_a_night_reuses_the_trees_registered_within_retrain_days(data, mlflow_uri, monkeypatch):
    import datetime as dt

    import mlflow
    import mlflow.lightgbm

    from genre_lib.ranking import rerank_registry as registry

    inter, cat = data
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment("genre-nightly")
    weekly = cfg_with("rerank.enabled=on", "rerank.retrain_days=3")
    night = dt.date(2026, 11, 20)
    with mlflow.start_run():
        assert registry.reusable(weekly, night) is None  # nothing registered yet
        trained, m1 = rerank.night(inter, cat, weekly, night)
    assert m1["rerank_reused"] == 0.0 and "rerank_fit_seconds" in m1

    fits = []
    real_fit = rerank.fit
    monkeypatch.setattr(rerank, "fit", lambda *a, **k: fits.append(a[3]) or real_fit(*a, **k))
    with mlflow.start_run() as run:
        reused, m2 = rerank.night(inter, cat, weekly, night + dt.timedelta(days=2))
    assert not fits and m2 == {"rerank_kept": 1.0, "rerank_reused": 1.0}
    assert reused.decision == trained.decision and reused.names == trained.names
    model = full_model(inter, cat, weekly)
    x = rerank.candidates(model, inter, weekly.recommend, weekly)[1]
    np.testing.assert_allclose(reused.predict(x), trained.predict(x), rtol=1e-12)
    tags = mlflow.MlflowClient().get_run(run.info.run_id).data.tags
    assert tags["rerank_trees"] == f"{registry.NAME} v1, trained for 2026-11-20"

    with mlflow.start_run():
        assert registry.reusable(weekly, night + dt.timedelta(days=3)) is None  # older than the window
        assert registry.reusable(weekly, night - dt.timedelta(days=1)) is None  # a backfill: never later trees
        assert registry.reusable(cfg_with("rerank.enabled=on", "rerank.retrain_days=3", "rerank.num_leaves=7"),
                                 night) is None  # other settings, other trees
        assert registry.reusable(cfg_with("rerank.enabled=on"), night) is None  # 1: every night trains
        assert registry.reusable(weekly, night) is not None

        def gone(uri):
            raise OSError(f"{uri}: no such artifact")
        monkeypatch.setattr(mlflow.lightgbm, "load_model", gone)
        assert registry.reusable(weekly, night) is None  # unreadable trees: the night trains instead
