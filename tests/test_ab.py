"""A/B variants: the assignment rule, the `ab` section's validation, the recommend stage writing each
user's list from their variant, and evaluation per variant with bootstrap intervals and folds."""
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genre_lib.config.settings import ConfigError, load_config
from genre_lib.evaluation import ab_eval
from genre_lib.evaluation.offline import evaluate
from genre_lib.lake.catalogue import Catalogue
from genre_lib.lake.storage import Lake
from genre_lib.protocol.metrics import per_user_metrics, ranking_metrics
from genre_lib.protocol.splits import new_items, split
from genre_lib.ranking import ab, blend
from genre_lib.ranking import model as ranker
from genre_lib.ranking.interest import genre_weights
from genre_lib.stages import recommend as rec
from tests.test_recommend import tiny_data

ROOT = Path(__file__).resolve().parent.parent
BASE = ["recommend.top_n=5", "recommend.execution.block_users=7", "recommend.weights.genre=0.2",
        "recommend.weights.content=0.2", "recommend.weights.cf=1", "recommend.weights.popularity=0.1"]


def ab_set(variants: str, salt: str = "2026-12") -> str:
    return f"ab={{salt: '{salt}', variants: [{variants}]}}"


TWO = ab_set("{name: control, share: 0.5}, "
             "{name: genre-heavy, share: 0.5, overrides: {recommend.weights.genre: 1.5}}")
IDS = [f"user-{i}" for i in range(10_000)]


# --------------------------------------------------------------------------------------------
# assignment
# --------------------------------------------------------------------------------------------
def test_assignment_is_a_keyed_hash_stable_across_calls_and_processes():
    cfg = load_config(None, [TWO])
    first = ab.assign(IDS, cfg.ab)
    np.testing.assert_array_equal(first, ab.assign(IDS, cfg.ab))
    np.testing.assert_array_equal(first[::-1], ab.assign(IDS[::-1], cfg.ab))  # per id, not per position
    np.testing.assert_array_equal(first[:50], ab.assign(IDS[:50], cfg.ab))    # not on the population
    # a fresh interpreter (another hash seed) gives the same variants: nothing per-process enters
    code = ("from genre_lib.ranking import ab; from genre_lib.config.settings import load_config; import json, sys; "
            f"print(json.dumps(list(ab.assign([f'user-{{i}}' for i in range(10000)], load_config(None, [{TWO!r}]).ab))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == list(first)
    # the rule itself: first 8 bytes of HMAC-SHA256(salt, id) as a uniform, cumulative shares in order
    import hashlib
    import hmac
    u = int.from_bytes(hmac.new(b"2026-12", b"user-7", hashlib.sha256).digest()[:8], "big") / 2 ** 64
    assert ab.uniform(["user-7"], "2026-12")[0] == u
    assert first[7] == ("control" if u < 0.5 else "genre-heavy")


def test_assignment_changes_with_the_salt_and_keeps_the_shares():
    cfg = load_config(None, [TWO])
    other = load_config(None, [ab_set(TWO.split("variants: [", 1)[1].rsplit("]}", 1)[0], salt="2027-01")])
    a, b = ab.assign(IDS, cfg.ab), ab.assign(IDS, other.ab)
    assert 0.45 < (a == b).mean() < 0.55  # a new salt re-draws everyone, independently of the old draw
    three = load_config(None, [ab_set("{name: a, share: 0.6}, {name: b, share: 0.3}, {name: c, share: 0.1}")])
    for conf in (cfg, other, three):
        got = pd.Series(ab.assign(IDS, conf.ab)).value_counts(normalize=True)
        for v in conf.ab.variants:
            assert abs(got.get(v.name, 0.0) - v.share) < 0.02, (v.name, got.to_dict())


@pytest.mark.parametrize("variants, field", [
    ("{name: a, share: 0.5}, {name: a, share: 0.5}", r"ab: variants: duplicate names \['a'\]"),
    ("{name: a, share: 0.5}, {name: b, share: 0.4}", r"ab: variants: shares must sum to 1, got 0.9"),
    ("{name: a, share: 1.0}, {name: b, share: 0}", r"ab\.variants\.1\.share"),
    ("{name: a, share: 1.5}, {name: b, share: -0.5}", r"ab\.variants\.0\.share"),
    ("{name: a, share: 1.0}", r"ab: variants: needs at least 2 variants, got 1"),
    ("{name: a, share: 0.5, overrides: {eval.k: 5}}, {name: b, share: 0.5}",
     r"variants\[a\]\.overrides\.eval\.k: only recommend\.\* keys"),
    ("{name: a, share: 0.5, overrides: {recommend.privacy.pseudonymize_users: true}}, {name: b, share: 0.5}",
     r"variants\[a\]\.overrides\.recommend\.privacy\.pseudonymize_users"),
    ("{name: a, share: 0.5, overrides: {recommend.privacy: {pseudonymize_users: true}}}, {name: b, share: 0.5}",
     r"variants\[a\]\.overrides\.recommend\.privacy: only recommend\.\* keys .*\(not recommend\.privacy\."),
    ("{name: a, share: 0.5}, {name: b, share: 0.5, overrides: {recommend.cf_reg: 7}}",
     r"ab\.variants\[b\]\.overrides: recommend\.cf_reg moved to recommend\.cf\.reg"),
    ("{name: a, share: 0.5, overrides: {recommend.weights.genr: 1}}, {name: b, share: 0.5}",
     r"ab\.variants\[a\]\.overrides: recommend\.weights\.genr: unknown key"),
    ("{name: a, share: 0.5}, {name: b, share: 0.5, overrides: {recommend.cf.reg: -1}}",
     r"ab\.variants\[b\]\.overrides: recommend\.cf\.reg: Input should be greater than 0"),
    ("{name: a, share: 0.5}, {name: b, share: 0.5, overrides: {recommend.genre.scorer: nope}}",
     r"ab\.variants\[b\]\.overrides: recommend\.genre\.scorer"),
    ("{name: a, share: 0.5}, {name: b, share: 0.5, overrides: {recommend.weights: {genre: 0, content: 0, cf: 0}}}",
     r"ab\.variants\[b\]\.overrides: recommend\.weights: at least one weight"),
    ("{name: 'a.b', share: 0.5}, {name: b, share: 0.5}", r"ab\.variants\.0\.name"),
    ("{name: difference, share: 0.5}, {name: b, share: 0.5}", r"ab\.variants\.0\.name: .*reserved"),
])
def test_bad_ab_sections_are_refused_by_name(variants, field):
    with pytest.raises(ConfigError, match=field):
        load_config("configs/default.yaml", [ab_set(variants)])


def test_ab_needs_a_salt_and_folds_need_variants():
    with pytest.raises(ConfigError, match=r"ab: salt: must not be empty"):
        load_config(None, ["ab={variants: [{name: a, share: 0.5}, {name: b, share: 0.5}]}"])
    with pytest.raises(ConfigError, match=r"ab: variants: needs at least 2 variants, got 0"):
        load_config(None, ["ab.salt=x"])
    with pytest.raises(ConfigError, match=r"eval\.folds: 3 folds cross-validate the A/B variants"):
        load_config(None, ["eval.folds=3"])
    with pytest.raises(ConfigError, match=r"eval: folds > 1 splits users"):
        load_config(None, [TWO, "eval.folds=3", "eval.protocol=cold_items"])
    cfg = load_config(None, [TWO, "eval.folds=3"])
    assert cfg.eval.folds == 3 and not load_config(None, []).ab.variants


def test_variant_config_applies_overrides_like_set():
    cfg = load_config("configs/default.yaml", [ab_set(
        "{name: a, share: 0.5}, {name: b, share: 0.5, overrides: {recommend.weights.genre: 1.5, "
        "recommend.genre.scorer: share, recommend.cf.reg: 10}}")])
    a, b = (ab.variant_config(cfg, v) for v in cfg.ab.variants)
    assert a.recommend == cfg.recommend and not a.ab.variants
    assert (b.recommend.weights.genre, b.recommend.genre.scorer, b.recommend.cf.reg) == (1.5, "share", 10.0)
    assert b.recommend.weights.cf == cfg.recommend.weights.cf and b.genres == cfg.genres
    assert ab.fit_key(a.recommend) != ab.fit_key(b.recommend)
    weights_only = load_config(None, ["recommend.weights.genre=3", "recommend.top_n=7",
                                      "recommend.execution.block_users=9",
                                      "recommend.execution.user_block_rows=100"]).recommend
    assert ab.fit_key(weights_only) == ab.fit_key(load_config(None, []).recommend)


# --------------------------------------------------------------------------------------------
# the recommend stage
# --------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    cfg: object
    lake: Lake
    ds: str = "2026-11-22"

    def manifest(self, **extra):
        return {"run_id": "t", "config_hash": self.cfg.hash(), **extra}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lake = Lake(str(tmp_path_factory.mktemp("ab") / "lake"))
    ds, man = "2026-11-22", {"run_id": "t", "config_hash": "x"}
    inter, items, scores, emb = tiny_data(n_users=60, n=1500)
    lake.write_pandas("interactions_clean", ds, inter, man)
    lake.write_pandas("items_clean", ds, items, man)
    lake.write_pandas("item_genre_scores", ds, scores, man)
    lake.write_pandas("item_embeddings", ds, emb, man)
    weights = genre_weights(inter, Catalogue(items=items), load_config(None, []).genres, pd.Timestamp(ds).date())
    lake.write_pandas("user_genre_weights", ds, weights, man)
    return lake


def run_recommend(lake: Lake, overrides: list[str]):
    ctx = Ctx(load_config(None, [f"lake.root={lake.root}", *BASE, *overrides]), lake)
    metrics = rec.run(ctx)
    return ctx, metrics, lake.read_pandas("recommendations", ctx.ds)


def lists(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["user_id", "rank"]).reset_index(drop=True)


def before_ab(ctx, rc=None, model=None) -> pd.DataFrame:
    """What the stage wrote before A/B existed: one fit, every user ranked with cfg.recommend."""
    cfg, rc = ctx.cfg, rc or ctx.cfg.recommend
    if model is None:
        history = ctx.lake.read_pandas("interactions_clean", ctx.ds)
        model = ranker.fit(history, Catalogue.from_lake(ctx.lake, ctx.ds),
                        ctx.lake.read_pandas("user_genre_weights", ctx.ds), rc, cfg.genres, cfg.clean.rating_max)
    return blend.recommendations_frame(model, blend.recommend(model, rc.weights, rc.top_n, rc.execution.block_users), rc)


def test_without_ab_the_table_is_unchanged_and_variant_is_null(lake):
    ctx, metrics, table = run_recommend(lake, [])
    assert table["variant"].isna().all() and not any(k.startswith("ab_") for k in metrics)
    old = before_ab(ctx)
    assert list(table.columns[:-1]) == [c for c in table.columns if c != "variant"]
    pd.testing.assert_frame_equal(table.drop(columns="variant"), old[table.columns.drop("variant")],
                                  check_exact=True)
    assert lake.manifest("recommendations", ctx.ds)["schema_version"] == 3


def test_each_user_gets_the_list_of_their_variant(lake):
    ctx, metrics, table = run_recommend(lake, [TWO])
    users = sorted(table["user_id"].unique())
    want = dict(zip(users, ab.assign(users, ctx.cfg.ab)))
    got = table.groupby("user_id")["variant"].agg(lambda v: set(v))
    assert all(got[u] == {want[u]} for u in users)  # one variant per user, the assigned one
    assert set(want.values()) == {"control", "genre-heavy"}
    assert metrics["ab_users_control"] + metrics["ab_users_genre-heavy"] == len(users) == metrics["users"]
    assert metrics["ab_users_control"] == sum(v == "control" for v in want.values())
    # control ranks as without A/B, genre-heavy as the whole night with weights.genre = 1.5
    base = lists(before_ab(ctx))
    heavy_rc = ab.variant_config(ctx.cfg, ctx.cfg.ab.variants[1]).recommend
    heavy = lists(before_ab(ctx, heavy_rc))
    cols = ["user_id", "rank", "item_id", "score", "reason"]
    for name, ref in (("control", base), ("genre-heavy", heavy)):
        mine = lists(table[table["variant"] == name])
        pd.testing.assert_frame_equal(mine[cols], lists(ref[ref["user_id"].isin(set(mine["user_id"]))])[cols])
    # the weights differ enough that some of genre-heavy's users see other items than they would in control
    theirs = set(table.loc[table["variant"] == "genre-heavy", "user_id"])
    assert not lists(heavy[heavy["user_id"].isin(theirs)])["item_id"].equals(
        lists(base[base["user_id"].isin(theirs)])["item_id"])


def test_a_fit_time_override_refits_the_model(lake, monkeypatch):
    fits = []
    real_fit = ranker.fit_items  # the item side: fitted once per distinct set of fit-time settings
    monkeypatch.setattr(rec, "fit_items", lambda *a, **k: fits.append(a[2].cf.reg) or real_fit(*a, **k))
    ctx, _, table = run_recommend(lake, [ab_set(
        "{name: a, share: 0.5, overrides: {recommend.weights.genre: 0.9}}, "
        "{name: b, share: 0.5, overrides: {recommend.cf.reg: 7}}")])
    assert fits == [ctx.cfg.recommend.cf.reg, 7.0]  # weights-only variant a reuses the night's model
    monkeypatch.setattr(rec, "fit_items", real_fit)
    rc_b = ab.variant_config(ctx.cfg, ctx.cfg.ab.variants[1]).recommend
    ref = lists(before_ab(ctx, rc_b))
    mine = lists(table[table["variant"] == "b"])
    assert len(mine) > 0
    pd.testing.assert_frame_equal(mine[["user_id", "item_id", "score"]],
                                  lists(ref[ref["user_id"].isin(set(mine["user_id"]))])[["user_id", "item_id", "score"]])


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def test_per_user_metrics_average_to_ranking_metrics():
    rng = np.random.default_rng(3)
    truth = pd.DataFrame({"user_id": rng.integers(0, 40, 400).astype(str), "item_id": rng.integers(0, 60, 400).astype(str)})
    recs = pd.DataFrame({"user_id": np.repeat(np.arange(35).astype(str), 12), "item_id": rng.integers(0, 60, 420).astype(str),
                         "rank": np.tile(np.arange(1, 13), 35)})
    per = per_user_metrics(truth, recs, 10)
    whole = ranking_metrics(truth, recs, 10)
    assert len(per) == whole["users"] == len(set(truth.user_id) & set(recs.user_id))
    for c in per.columns:
        assert per[c].mean() == pytest.approx(whole[c], abs=1e-12)
    assert per["precision@10"].max() <= 1 and (per["hit_rate@10"] > 0).sum() > 5


def test_evaluate_reports_each_variant_on_its_own_users_with_intervals():
    inter, items, scores, emb = tiny_data(n_users=80, n_items=120, n=2400)  # room for misses: no metric at 1
    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]], embeddings=emb)
    cfg = load_config(None, [*BASE, TWO, "eval.k=5", "eval.folds=3"])
    payload = evaluate(inter, cat, cfg)
    block = payload["variants_ab"]
    assert list(block) == ["control", "genre-heavy", "difference"]
    metrics = ["ndcg@5", "precision@5", "recall@5", "map@5"]
    for name in ("control", "genre-heavy"):
        e = block[name]
        assert e["users"] > 10 and e["share"] == 0.5
        for m in metrics:
            lo, hi = e["ci95"][m]
            assert lo <= e[m] <= hi and lo < hi, (name, m, e[m], lo, hi)
        assert e["folds"]["n"] == 3 and all(e["folds"][m]["std"] >= 0 for m in metrics)
    assert block["control"]["users"] + block["genre-heavy"]["users"] == payload["models"]["blend"]["users"]
    d = block["difference"]
    assert (d["a"], d["b"]) == ("control", "genre-heavy")
    for m in metrics:
        assert d[m]["value"] == pytest.approx(block["genre-heavy"][m] - block["control"][m])
        assert d[m]["ci95"][0] <= d[m]["value"] <= d[m]["ci95"][1]
    # control carries no override: its numbers are the blend's on exactly the users assigned to it
    train, test = split(inter, "temporal", cfg.eval.holdout_share, cfg.eval.seed)
    test = new_items(test, train)
    model = ranker.fit(train, cat, genre_weights(train, cat, cfg.genres, None), cfg.recommend, cfg.genres, cfg.clean.rating_max)
    control = np.flatnonzero((ab.assign(model.user_ids, cfg.ab) == "control") & pd.Index(model.user_ids).isin(set(test.user_id)))
    top = blend.recommend(model, cfg.recommend.weights, 5, 7, users=control)
    recs = top.frame(model)
    ref = ranking_metrics(test[test.user_id.isin(set(model.user_ids[control]))], recs, 5)
    assert ref["users"] == block["control"]["users"]
    for m in metrics:
        assert block["control"][m] == pytest.approx(ref[m], abs=1e-12)
    flat = ab_eval.mlflow_metrics(block)
    assert flat["ab.control.ndcg_at_5"] == block["control"]["ndcg@5"]
    assert flat["ab.diff.ndcg_at_5"] == d["ndcg@5"]["value"] and "ab.genre-heavy.map_at_5.ci95_hi" in flat
    assert "ab.control.recall_at_5.folds_std" in flat
    assert "| genre-heavy - control |" in ab_eval.markdown(block, 5)
    json.dumps(payload, allow_nan=False)  # metrics.json stays strict JSON


def test_bootstrap_is_seeded_and_covers_the_mean():
    vals = np.random.default_rng(0).exponential(size=(300, 2))
    a = ab_eval.bootstrap_means(vals, np.random.default_rng(42))
    b = ab_eval.bootstrap_means(vals, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    lo, hi = np.percentile(a[:, 0], [2.5, 97.5])
    se = vals[:, 0].std(ddof=1) / np.sqrt(300)
    assert lo < vals[:, 0].mean() < hi and 0.7 < (hi - lo) / (2 * 1.96 * se) < 1.3  # ~ the normal interval
    ab_eval._CELLS, saved = 700, ab_eval._CELLS  # chunked draws: the same numbers
    try:
        np.testing.assert_array_equal(ab_eval.bootstrap_means(vals, np.random.default_rng(42)), a)
    finally:
        ab_eval._CELLS = saved


def test_evaluate_without_ab_has_no_variants_ab():
    inter, items, scores, emb = tiny_data()
    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]], embeddings=emb)
    assert "variants_ab" not in evaluate(inter, cat, load_config(None, BASE))
    assert ab_eval.mlflow_metrics(None) == {} and ab_eval.markdown(None, 10) == ""
