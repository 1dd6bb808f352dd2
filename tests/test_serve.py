"""Publish and serve (issue 17): the gate, the SQLite serving store, the events log and the read API."""
import json
import sqlite3
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from genre_lib.config.settings import ConfigError, PipelineConfig, load_config
from genre_lib.lake.storage import Lake
from genre_lib.serve import base as store_base
from genre_lib.serve import store as store_mod
from genre_lib.serve.api import ApiSettings, create_app
from genre_lib.serve.events import LOG_NAME, LogPublisher, publisher_for
from genre_lib.serve.store import SqliteStore, StoreUnavailable
from genre_lib.stages import publish as pub

D1, D2, D3 = "2026-11-20", "2026-11-21", "2026-11-22"
M = {"run_id": "upstream", "config_hash": "h"}
REC_COLS = ["user_id", "rank", "item_id", "score", "genre_score", "content_score", "cf_score",
            "popularity_score", "reason", "genre_r", "variant"]


# --- a tiny lake -----------------------------------------------------------------------------------
def recs_frame(seed: int, users: int = 30, items: int = 60, top: int = 20, user_ids=None) -> pd.DataFrame:
    """Each user's top list drawn with power-law popularity (so the cold-start order is clear);
    every night (seed) draws other lists, and the reason names the night."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, items + 1) ** 1.1
    rows = []
    for u in range(users):
        uid = user_ids[u] if user_ids is not None else f"u{u:03d}"
        picks = rng.choice(items, size=top, replace=False, p=p / p.sum())
        for r, j in enumerate(picks):
            rows.append((uid, r + 1, f"i{j:03d}", float(top - r) + rng.random() / 10, 0.1, 0.2, 0.3, 0.0,
                         f"night{seed}", 0.5, None))  # variant: null, no A/B
    df = pd.DataFrame(rows, columns=REC_COLS)
    df["rank"] = df["rank"].astype("int32")
    return df


def night(lake: Lake, ds: str, *, seed: int, metric: float = 0.30, baseline: float = 0.10, users: int = 30,
          user_ids=None, variant: bool = False, evaluation: bool = True) -> pd.DataFrame:
    items = pd.DataFrame({"item_id": [f"i{j:03d}" for j in range(60)], "title": [f"Title {j}" for j in range(60)],
                          "description": None, "genres": [["Drama"]] * 60, "tags": None})
    lake.write_pandas("items_clean", ds, items, M)
    df = recs_frame(seed, users=users, user_ids=user_ids)
    if variant:  # an A/B night: each user's variant in the `variant` column
        df["variant"] = np.where(np.arange(len(df)) // 20 % 3 == 0, "treatment", "control")
    lake.write_pandas("recommendations", ds, df, M)
    if evaluation:
        lake.write_json("evaluation", ds, "metrics.json",
                        {"primary": "blend", "protocol": "temporal", "k": 10,
                         "models": {"blend": {"ndcg@10": metric, "precision@10": 0.1},
                                    "popularity": {"ndcg@10": baseline, "precision@10": 0.05}}}, M)
    return df


@pytest.fixture(autouse=True)
def publish_log_declared(monkeypatch):
    """The contract declares the publish stage's table; until tables.py does (the lead's wiring:
    Table("publish_log", "publish", 1, None)), these tests declare it for themselves."""
    from genre_lib.lake import tables

    decl = getattr(tables, "TABLES", None)
    if isinstance(decl, dict) and "publish_log" not in decl:
        monkeypatch.setitem(decl, "publish_log", tables.Table("publish_log", "publish", 1, None))


@dataclass
class Ctx:
    cfg: PipelineConfig
    lake: Lake
    ds: str
    run_id: str
    stage: str = "publish"

    def manifest(self, **extra) -> dict:
        return {"run_id": self.run_id, "config_hash": self.cfg.hash(), "stage": self.stage, **extra}


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("GENRE_API_KEY", raising=False)

    class Env:
        lake = Lake(str(tmp_path / "lake"))
        db = tmp_path / "serving" / "serving.db"

        def cfg(self, *sets):
            return load_config(None, [f"lake.root={tmp_path / 'lake'}", f"publish.sqlite_path={self.db}", *sets])

        def run(self, ds, run_id="run-1", *sets):
            return pub.run(Ctx(self.cfg(*sets), self.lake, ds, run_id))

        def client(self, **settings):
            return TestClient(create_app(lambda: SqliteStore(self.db), ApiSettings(**settings)))

        def events(self):
            return LogPublisher(tmp_path / "lake" / LOG_NAME).read()
    return Env()


def user_rows(df: pd.DataFrame, user: str, n: int) -> list[tuple]:
    mine = df[df["user_id"] == user]
    return [(r.item_id, int(r.rank), r.reason) for r in mine.itertuples()][:n]


def version_frame(version: int, users: int = 50, top: int = 20) -> pd.DataFrame:
    """A version whose every item and reason names it: a mixed read cannot hide."""
    return pd.DataFrame({"user_id": np.repeat([f"u{u}" for u in range(users)], top),
                         "rank": np.tile(np.arange(1, top + 1), users),
                         "item_id": [f"v{version}-i{(u * 7 + r) % 40}" for u in range(users) for r in range(top)],
                         "score": np.tile(np.arange(top, 0, -1, dtype=float), users),
                         "reason": f"v{version}", "title": None})


def commit_version(store, ds="2026-11-22", run_id=None) -> dict:
    with store.begin_version({"ds": ds, "run_id": run_id or "r"}) as w:
        w.add_rows(version_frame(w.version))
        return w.commit()


# --- the store -------------------------------------------------------------------------------------
def test_store_rows_in_rank_order_cold_start_and_split_frames(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    assert not store.initialised()
    df = recs_frame(1).assign(title="t")
    shuffled = df.sample(frac=1.0, random_state=0)  # one user's rows spread over both frames
    with store.begin_version({"ds": D1, "run_id": "r"}) as w:
        w.add_rows(shuffled.iloc[:300])
        assert store.current() is None  # nothing visible before the switch
        w.add_rows(shuffled.iloc[300:])
        meta = w.commit()
    assert (meta["rows"], meta["users"], meta["state"]) == (600, 30, "committed")
    assert store.current()["version"] == meta["version"]
    got = store.get("u007", 5)
    assert got.personalised and [(r["item_id"], r["rank"], r["reason"]) for r in got.rows] == user_rows(df, "u007", 5)
    cold = store.get("stranger", 100)
    counts = df["item_id"].value_counts()
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert not cold.personalised and [r["item_id"] for r in cold.rows] == [k for k, _ in expected]
    assert {r["reason"] for r in cold.rows} == {"popular"} and cold.rows[0]["score"] == counts.iloc[0] / 30
    with pytest.raises(ValueError, match="duplicate"):
        with store.begin_version({"ds": D2, "run_id": "r"}) as w:
            w.add_rows(df.iloc[:5])
            w.add_rows(df.iloc[:5])
    assert [m["version"] for m in store.versions(include_staging=True)] == [meta["version"]]
    with pytest.raises(ValueError, match="no rows"):
        store.begin_version({"ds": D2, "run_id": "r"}).commit()


def test_readers_never_see_a_mixed_or_empty_list_while_versions_switch(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    commit_version(store)
    stop, seen, bad = threading.Event(), [], []

    def reader(user):
        reading = SqliteStore(tmp_path / "s.db")  # the API's side: read-only connections
        while not stop.is_set():
            got = reading.get(user, 20)
            v = got.meta["version"]
            want = version_frame(v).query("user_id == @user")["item_id"].tolist()
            if [r["item_id"] for r in got.rows] != want or {r["reason"] for r in got.rows} != {f"v{v}"}:
                bad.append((v, got.rows))
            seen.append(v)

    threads = [threading.Thread(target=reader, args=(u,)) for u in ("u3", "u41")]
    for t in threads:
        t.start()
    for _ in range(30):
        commit_version(store)
        store.prune(1)  # the previous version is deleted right after the switch
    stop.set()
    for t in threads:
        t.join()
    assert not bad, bad[:1]
    assert len(set(seen)) >= 3, "the readers should have read across several switches"
    assert [m["version"] for m in store.versions()] == [31]


def test_prune_keeps_the_newest_and_the_current(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    for _ in range(5):
        commit_version(store)
    store.activate(2)  # a rollback: the served version is not among the newest
    assert store.prune(2) == [1, 3]
    assert [m["version"] for m in store.versions()] == [2, 4, 5]
    assert store.current()["version"] == 2 and store.get("u1", 3).rows[0]["reason"] == "v2"
    with sqlite3.connect(tmp_path / "s.db") as con:
        assert {v for (v,) in con.execute("SELECT DISTINCT version FROM recs")} == {2, 4, 5}
        assert {v for (v,) in con.execute("SELECT DISTINCT version FROM cold_start")} == {2, 4, 5}
    assert store.discard(2) is False and store.current()["version"] == 2
    with pytest.raises(KeyError):
        store.activate(1)


def test_abandoned_versions_are_invisible_and_pruned(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path / "s.db")
    commit_version(store)
    w = store.begin_version({"ds": D2, "run_id": "crashed"})
    w.add_rows(version_frame(w.version))  # the publisher dies here
    assert store.current()["version"] == 1 and store.get("u1", 1).rows[0]["reason"] == "v1"
    assert store.prune(3) == []  # a live writer is left alone...
    monkeypatch.setattr(store_base, "STALE_STAGING_S", -1)
    assert store.prune(3) == [2]  # ...a crashed one is removed
    with pytest.raises(RuntimeError, match="discarded"):
        w.commit()
    assert store.current()["version"] == 1


# --- the API ---------------------------------------------------------------------------------------
def test_api_serves_the_table_in_its_order(env):
    df = night(env.lake, D1, seed=1)
    assert env.run(D1)["published"] == 1
    c = env.client()
    for user in ("u000", "u017", "u029"):
        body = c.get(f"/v1/users/{user}/recommendations").json()
        assert (body["user_id"], body["ds"], body["run_id"], body["personalised"]) == (user, D1, "run-1", True)
        assert [(i["item_id"], i["rank"], i["reason"]) for i in body["items"]] == user_rows(df, user, 10)
        assert all(i["title"] == f"Title {int(i['item_id'][1:])}" for i in body["items"])
    body = c.get("/v1/users/u005/recommendations", params={"n": 20}).json()
    want = df[df.user_id == "u005"]
    assert [i["item_id"] for i in body["items"]] == want["item_id"].tolist()
    assert [i["score"] for i in body["items"]] == pytest.approx(want["score"].tolist())
    assert len(c.get("/v1/users/u005/recommendations", params={"n": 3}).json()["items"]) == 3


def test_api_unknown_user_gets_the_cold_start_list(env):
    df = night(env.lake, D1, seed=1)
    env.run(D1)
    body = env.client().get("/v1/users/newcomer/recommendations", params={"n": 5}).json()
    top = sorted(df["item_id"].value_counts().items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert body["personalised"] is False and body["ds"] == D1
    assert [i["item_id"] for i in body["items"]] == [k for k, _ in top]
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
    assert {i["reason"] for i in body["items"]} == {"popular"}


@pytest.mark.parametrize("path,params,status", [
    ("/v1/users/" + "x" * 129 + "/recommendations", {}, 422),
    ("/v1/users/ab%01cd/recommendations", {}, 422),
    ("/v1/users/ab%0Acd/recommendations", {}, 422),
    ("/v1/users/u001/recommendations", {"n": 0}, 422),
    ("/v1/users/u001/recommendations", {"n": 101}, 422),
    ("/v1/users/u001/recommendations", {"n": "ten"}, 422),
    ("/v1/users/u001/recommendations", {"limit": 5}, 400),
    ("/v1/users/u001/recommendations", {"n": 5, "debug": 1}, 400),
    ("/v1/nights", {"all": 1}, 400),
    ("/v1/health", {"x": 1}, 400),
])
def test_api_refuses_bad_input_with_json(env, path, params, status):
    night(env.lake, D1, seed=1)
    env.run(D1)
    r = env.client().get(path, params=params)
    assert r.status_code == status and r.headers["content-type"] == "application/json" and "detail" in r.json()


def test_api_accepts_edge_inputs(env):
    night(env.lake, D1, seed=1)
    env.run(D1)
    c = env.client()
    assert c.get("/v1/users/" + "x" * 128 + "/recommendations").status_code == 200
    assert len(c.get("/v1/users/u001/recommendations", params={"n": 100}).json()["items"]) == 20
    assert c.get("/v1/users/ünïcødé id/recommendations", params={"n": 1}).json()["personalised"] is False


def test_api_key(env, monkeypatch):
    night(env.lake, D1, seed=1)
    env.run(D1)
    monkeypatch.setenv("GENRE_API_KEY", "s3cret")
    c = env.client()
    for path in ("/v1/users/u001/recommendations", "/v1/nights", "/v1/health"):
        assert c.get(path).status_code == 401
        r = c.get(path, headers={"X-API-Key": "wrong"})
        assert r.status_code == 401 and r.json()["detail"]
        assert c.get(path, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert env.client(api_key=None).get("/v1/health").status_code == 200  # no key configured: open


def test_api_503_on_missing_or_corrupt_store_and_recovers(env):
    c = env.client()
    for path in ("/v1/users/u001/recommendations", "/v1/nights", "/v1/health"):
        r = c.get(path)
        assert r.status_code == 503 and r.headers["content-type"] == "application/json", path
    env.db.parent.mkdir(parents=True)
    env.db.write_bytes(b"this is not a database" * 100)
    r = c.get("/v1/users/u001/recommendations")
    assert r.status_code == 503 and "unavailable" in r.json()["detail"]
    assert c.get("/v1/health").status_code == 503
    env.db.unlink()
    night(env.lake, D1, seed=1)
    env.run(D1)
    assert c.get("/v1/users/u001/recommendations").status_code == 200  # same app, store back
    assert c.get("/v1/health").json()["ds"] == D1
    with open(env.db, "r+b") as f:  # corrupted in place, under the server's open connections
        f.write(b"garbage!" * 512)
    assert c.get("/v1/users/u001/recommendations").status_code == 503
    assert c.get("/v1/health").status_code == 503


def test_api_503_when_nothing_published_and_when_the_factory_fails(env):
    SqliteStore(env.db).find(D1, "x")  # creates an empty store
    c = env.client()
    assert c.get("/v1/health").status_code == 503 and c.get("/v1/health").json()["status"] == "empty"
    assert c.get("/v1/users/u001/recommendations").status_code == 503
    assert c.get("/v1/nights").json() == {"current": None, "nights": []}
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("store host down")
        return SqliteStore(env.db)
    c = TestClient(create_app(flaky, ApiSettings()))
    assert c.get("/v1/nights").status_code == 503
    assert c.get("/v1/nights").status_code == 200 and len(calls) == 2


def test_openapi_describes_the_routes(env):
    spec = env.client().get("/openapi.json").json()
    assert {"/v1/users/{user_id}/recommendations", "/v1/nights", "/v1/health"} <= set(spec["paths"])
    params = {p["name"]: p for p in spec["paths"]["/v1/users/{user_id}/recommendations"]["get"]["parameters"]}
    assert params["n"]["schema"]["maximum"] == 100 and params["user_id"]["schema"]["maxLength"] == 128


def test_pseudonymised_night_is_served_by_raw_id(env, monkeypatch):
    from genre_lib.lake.pseudonym import pseudonymize

    monkeypatch.setenv("GENRE_PSEUDONYM_KEY", "k1")
    raw = [f"u{u:03d}" for u in range(30)]
    df = night(env.lake, D1, seed=3, user_ids=list(pseudonymize(raw, "GENRE_PSEUDONYM_KEY")))
    assert env.run(D1, "run-1", "recommend.privacy.pseudonymize_users=true")["published"] == 1
    c = env.client()
    body = c.get("/v1/users/u004/recommendations").json()
    hashed = pseudonymize(["u004"], "GENRE_PSEUDONYM_KEY")[0]
    assert body["personalised"] is True and body["user_id"] == "u004"
    assert [(i["item_id"], i["rank"], i["reason"]) for i in body["items"]] == user_rows(df, hashed, 10)
    assert c.get(f"/v1/users/{hashed}/recommendations").json()["personalised"] is False
    monkeypatch.setenv("GENRE_PSEUDONYM_KEY", "another key")
    assert c.get("/v1/users/u004/recommendations").json()["personalised"] is False
    monkeypatch.delenv("GENRE_PSEUDONYM_KEY")
    r = c.get("/v1/users/u004/recommendations")
    assert r.status_code == 503 and "GENRE_PSEUDONYM_KEY" in r.json()["detail"]


# --- gate and publish ------------------------------------------------------------------------------
def test_bad_night_is_not_published_and_the_previous_one_stays_served(env):
    good = night(env.lake, D1, seed=1, metric=0.30, baseline=0.10)
    assert env.run(D1, "run-1")["published"] == 1
    night(env.lake, D2, seed=2, metric=0.08, baseline=0.10)  # worse than popularity
    out = env.run(D2, "run-2")
    assert out["published"] == 0 and out["gate_passed"] == 0
    assert "popularity" in out["gate_reason"] and out["gate_reason"].startswith("refused")
    body = env.client().get("/v1/users/u001/recommendations").json()
    assert (body["ds"], body["run_id"]) == (D1, "run-1")
    assert [(i["item_id"], i["rank"], i["reason"]) for i in body["items"]] == user_rows(good, "u001", 10)
    with open(env.lake.files("publish_log", D2)[0]) as f:
        logged = json.load(f)
    assert logged["decision"]["publish"] is False and logged["result"]["published"] == 0
    assert D2 in env.lake.committed("publish_log")
    assert [e["ds"] for e in env.events()] == [D1]
    assert [n["ds"] for n in env.client().get("/v1/nights").json()["nights"]] == [D1]


def test_gate_max_drop_and_force(env):
    night(env.lake, D1, seed=1, metric=0.30)
    env.run(D1, "run-1")
    night(env.lake, D2, seed=2, metric=0.26)  # above popularity, but 13% below the served night
    out = env.run(D2, "run-2")
    assert out["published"] == 0 and "below the served night" in out["gate_reason"] and out["gate_last"] == 0.30
    assert env.run(D2, "run-2", "publish.max_drop=0.2")["published"] == 1
    night(env.lake, D3, seed=3, metric=0.05, baseline=0.10)
    out = env.run(D3, "run-3", "publish.force=true")
    assert out["published"] == 1 and out["gate_forced"] == 1 and out["gate_reason"].startswith("forced")
    assert env.client().get("/v1/health").json()["ds"] == D3


def test_a_backfill_does_not_replace_a_newer_night(env):
    night(env.lake, D2, seed=2)
    env.run(D2, "run-2")
    night(env.lake, D1, seed=1, metric=0.5)  # an older night rerun later, even a better one
    out = env.run(D1, "run-1")
    assert out["published"] == 0 and "older than the served night" in out["gate_reason"]
    assert env.client().get("/v1/health").json()["ds"] == D2
    assert env.run(D1, "run-1", "publish.force=true")["published"] == 1  # an operator's rollback


def test_gate_needs_the_evaluation(env):
    night(env.lake, D1, seed=1, evaluation=False)
    with pytest.raises(FileNotFoundError, match="evaluation.*ds=2026-11-20"):
        env.run(D1)
    with pytest.raises(FileNotFoundError, match="evaluation"):
        env.run(D1, "run-1", "publish.force=true")  # force overrides the gate, not a missing evaluation
    night(env.lake, D1, seed=1)
    with pytest.raises(ValueError, match="map@10"):
        env.run(D1, "run-1", "publish.metric=map@10")
    assert not env.db.exists() or SqliteStore(env.db).versions() == []


def test_gate_against_a_given_state(env):
    night(env.lake, D1, seed=1, metric=0.30, baseline=0.10)
    pc = PipelineConfig().publish
    first = pub.gate(env.lake, D1, pc, None)
    assert (first.publish, first.metric, first.baseline, first.last) == (True, 0.30, 0.10, None)
    served = {"version": 7, "metric": {"name": "ndcg@10", "value": 0.40}}
    worse = pub.gate(env.lake, D1, pc, served)
    assert (worse.publish, worse.last, worse.last_version) == (False, 0.40, 7) and "25.0% below" in worse.reason
    other = pub.gate(env.lake, D1, pc, {"version": 7, "metric": {"name": "map@10", "value": 0.9}})
    assert other.publish and other.last is None and "not compared" in other.reason
    edge = pub.gate(env.lake, D1, pc.model_copy(update={"max_drop": 0.25}), served)
    assert edge.publish  # exactly at the allowed drop


def test_rerun_of_the_same_run_is_idempotent_and_old_versions_are_pruned(env):
    night(env.lake, D1, seed=1)
    first = env.run(D1, "run-1")
    again = env.run(D1, "run-1")
    assert (again["version"], again["already_published"], again["events_sent"]) == (first["version"], 1, 0)
    assert len(env.events()) == 1 and len(SqliteStore(env.db).versions()) == 1
    for k in range(2, 6):
        env.run(D1, f"run-{k}", "publish.keep=2")
    store = SqliteStore(env.db)
    assert [m["run_id"] for m in store.versions()] == ["run-4", "run-5"]
    assert store.current()["run_id"] == "run-5"
    assert [e["run_id"] for e in env.events()] == [f"run-{k}" for k in range(1, 6)]


def test_a_crash_before_the_event_is_repaired_by_the_rerun(env, monkeypatch):
    night(env.lake, D1, seed=1)
    real_send = LogPublisher.send

    def broken(self, event):
        raise OSError("disk full")
    monkeypatch.setattr(LogPublisher, "send", broken)
    with pytest.raises(OSError):
        env.run(D1, "run-1")
    store = SqliteStore(env.db)
    assert store.current()["run_id"] == "run-1" and not store.current().get("event_sent")
    monkeypatch.setattr(LogPublisher, "send", real_send)
    out = env.run(D1, "run-1")
    assert out["already_published"] == 1 and out["events_sent"] == 1
    assert len(env.events()) == 1 and len(store.versions()) == 1
    env.run(D1, "run-1")
    assert len(env.events()) == 1


def test_a_crashed_write_of_the_same_run_is_replaced(env):
    night(env.lake, D1, seed=1)
    store = SqliteStore(env.db)
    w = store.begin_version({"ds": D1, "run_id": "run-1"})
    w.add_rows(version_frame(w.version))  # died before commit
    out = env.run(D1, "run-1")
    assert out["published"] == 1 and out["already_published"] == 0
    assert [m["version"] for m in store.versions(include_staging=True)] == [out["version"]]


def test_event_carries_the_night_and_its_variants(env):
    df = night(env.lake, D1, seed=1, metric=0.3, variant=True)
    out = env.run(D1, "run-1")
    (event,) = env.events()
    assert event["type"] == "recommendations-ready"
    assert (event["ds"], event["run_id"], event["version"], event["rows"]) == (D1, "run-1", out["version"], 600)
    assert event["metric"] == {"name": "ndcg@10", "value": 0.3}
    assert event["variants"] == ["control", "treatment"]
    body = env.client().get("/v1/users/u003/recommendations").json()
    assert body["variant"] == df[df.user_id == "u003"]["variant"].iloc[0] == "treatment"
    assert env.client().get("/v1/users/u001/recommendations").json()["variant"] == "control"
    night(env.lake, D2, seed=2, metric=0.3)
    env.run(D2, "run-2")
    assert env.events()[-1]["variants"] == []


def test_publish_refuses_a_table_that_disagrees_with_its_manifest(env):
    night(env.lake, D1, seed=1)
    staged = env.lake.staging("recommendations", D1)
    pq.write_table(pa.Table.from_pandas(recs_frame(1), preserve_index=False), f"{staged}/part-00000.parquet")
    env.lake.commit("recommendations", D1, staged, {**M, "row_count": 999})
    with pytest.raises(ValueError, match="999"):
        env.run(D1)
    assert SqliteStore(env.db).versions(include_staging=True) == []


def test_publish_config_and_factories(tmp_path):
    cfg = load_config(None)
    assert (cfg.publish.store, cfg.publish.events, cfg.publish.keep, cfg.publish.force) == ("sqlite", "log", 3, False)
    assert cfg.publish.sqlite_path == "serving/serving.db"
    for bad, field in [("publish.max_drop=1.5", "publish.max_drop"), ("publish.keep=0", "publish.keep"),
                       ("publish.store=mongo", "publish.store"), ("publish.typo=1", "publish.typo")]:
        with pytest.raises(ConfigError, match=field):
            load_config(None, [bad])
    cfg = load_config(None, [f"lake.root={tmp_path}/lk", f"publish.sqlite_path={tmp_path}/x/s.db"])
    assert isinstance(store_mod.store_for(cfg), SqliteStore) and store_mod.store_for(cfg).path == f"{tmp_path}/x/s.db"
    p = publisher_for(cfg)
    p.send({"ds": D1})
    assert p.read() == [{"ds": D1}] and (tmp_path / "lk" / LOG_NAME).is_file()


def test_store_unavailable_is_not_swallowed_by_get(tmp_path):
    store = SqliteStore(tmp_path / "nothing-here.db")
    with pytest.raises(StoreUnavailable):
        store.get("u1", 10)
    assert not (tmp_path / "nothing-here.db").exists()  # readers never create a store
