"""The Redis serving store and stream publisher against the real Redis on 127.0.0.1:6379 (skipped
when it does not answer). Each test works under its own random key prefix and deletes it after."""
import json
import threading
import uuid

import pytest
from fastapi.testclient import TestClient

from genre_lib.serve.api import ApiSettings, create_app
from genre_lib.serve.events import RedisStreamPublisher
from genre_lib.serve.store import RedisStore
from tests.test_serve import D1, D2, Ctx, night, publish_log_declared, recs_frame, user_rows, version_frame  # noqa: F401

redis = pytest.importorskip("redis", reason="the redis client is not installed (requirements-dev.txt)")

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def client():
    r = redis.Redis.from_url(URL, decode_responses=True, socket_connect_timeout=1, socket_timeout=5)
    try:
        r.ping()
    except redis.RedisError as e:
        pytest.skip(f"no Redis answering at {URL}: {e}")
    yield r
    r.close()


@pytest.fixture()
def prefix(client):
    p = f"genre-test-{uuid.uuid4().hex[:12]}"
    yield p
    keys = list(client.scan_iter(match=f"{p}*", count=1000))
    if keys:
        client.unlink(*keys)


def keys_of(client, prefix, version):
    return list(client.scan_iter(match=f"{prefix}:v:{version}:*", count=1000))


def commit(store, ds=D1, run_id="r"):
    with store.begin_version({"ds": ds, "run_id": run_id}) as w:
        w.add_rows(version_frame(w.version))
        return w.commit()


def test_store_rows_cold_start_and_layout(client, prefix):
    store = RedisStore(URL, prefix)
    assert store.current() is None and store.get("u1", 5) is None
    df = recs_frame(1).assign(title="t")
    shuffled = df.sample(frac=1.0, random_state=0)
    with store.begin_version({"ds": D1, "run_id": "r"}) as w:
        w.add_rows(shuffled.iloc[:250])  # users split over two frames are merged
        assert store.current() is None
        w.add_rows(shuffled.iloc[250:])
        meta = w.commit()
    assert (meta["rows"], meta["users"]) == (600, 30)
    assert client.get(f"{prefix}:current") == str(meta["version"])
    stored = json.loads(client.get(f"{prefix}:v:{meta['version']}:u:u007"))
    assert [i["rank"] for i in stored["items"]] == list(range(1, 21))
    got = store.get("u007", 5)
    assert got.personalised and [(r["item_id"], r["rank"], r["reason"]) for r in got.rows] == user_rows(df, "u007", 5)
    cold = store.get("stranger", 3)
    top = sorted(df["item_id"].value_counts().items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert not cold.personalised and [r["item_id"] for r in cold.rows] == [k for k, _ in top]
    assert json.loads(client.hget(f"{prefix}:versions", str(meta["version"])))["state"] == "committed"
    with pytest.raises(ValueError, match="duplicate"):
        with store.begin_version({"ds": D2, "run_id": "r"}) as w:
            w.add_rows(df.iloc[:5])
            w.add_rows(df.iloc[:5])
    assert [m["version"] for m in store.versions(include_staging=True)] == [meta["version"]]
    assert keys_of(client, prefix, meta["version"] + 1) == []  # the aborted version left no keys


def test_readers_never_see_a_mixed_or_empty_list_while_versions_switch(client, prefix):
    store = RedisStore(URL, prefix)
    commit(store)
    stop, seen, bad = threading.Event(), [], []

    def reader(user):
        reading = RedisStore(URL, prefix)
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
    for _ in range(10):
        commit(store)
        store.prune(1)
    stop.set()
    for t in threads:
        t.join()
    assert not bad, bad[:1]
    assert len(set(seen)) >= 3


def test_prune_keeps_the_newest_and_the_current_and_unlinks_keys(client, prefix):
    store = RedisStore(URL, prefix)
    versions = [commit(store)["version"] for _ in range(5)]
    assert len(keys_of(client, prefix, versions[0])) == 51  # 50 users and the cold-start list
    store.activate(versions[1])
    assert store.prune(2) == [versions[0], versions[2]]
    assert [m["version"] for m in store.versions()] == [versions[1], versions[3], versions[4]]
    assert keys_of(client, prefix, versions[0]) == [] and keys_of(client, prefix, versions[2]) == []
    assert len(keys_of(client, prefix, versions[3])) == 51
    assert store.get("u1", 1).rows[0]["reason"] == f"v{versions[1]}"
    assert store.discard(versions[1]) is False


def test_stream_publisher_xadd_then_xrange(client, prefix):
    stream = f"{prefix}:recommendations-ready"
    pub = RedisStreamPublisher(URL, stream=stream)
    event = {"type": "recommendations-ready", "ds": D1, "run_id": "r1", "version": 4, "rows": 600,
             "metric": {"name": "ndcg@10", "value": 0.3}, "variants": ["a", "b"]}
    entry_id = pub.send(event)
    ((got_id, fields),) = client.xrange(stream)
    assert got_id == entry_id and json.loads(fields["data"]) == event
    assert (fields["ds"], fields["run_id"], fields["version"]) == (D1, "r1", "4")
    small = RedisStreamPublisher(URL, stream=stream, maxlen=100)
    for k in range(600):
        small.send({"ds": D1, "run_id": f"r{k}", "version": k})
    assert 100 <= client.xlen(stream) < 600  # trimmed (approximately) to maxlen
    pub.close()
    small.close()


def test_publish_run_end_to_end_on_redis(client, prefix, tmp_path):
    from genre_lib.config.settings import load_config
    from genre_lib.lake.storage import Lake
    from genre_lib.stages import publish

    lake = Lake(str(tmp_path / "lake"))
    df = night(lake, D1, seed=1)
    cfg = load_config(None, [f"lake.root={tmp_path / 'lake'}", "publish.store=redis", "publish.events=redis",
                             f"publish.redis_url={URL}", f"publish.redis_prefix={prefix}"])
    out = publish.run(Ctx(cfg, lake, D1, "run-1"))
    assert out["published"] == 1 and publish.run(Ctx(cfg, lake, D1, "run-1"))["already_published"] == 1
    (entry,) = client.xrange(f"{prefix}:recommendations-ready")
    assert json.loads(entry[1]["data"])["version"] == out["version"]
    c = TestClient(create_app(lambda: RedisStore(URL, prefix), ApiSettings(api_key=None)))
    body = c.get("/v1/users/u002/recommendations").json()
    assert body["ds"] == D1 and [(i["item_id"], i["rank"], i["reason"]) for i in body["items"]] == user_rows(df, "u002", 10)
    assert c.get("/v1/health").json()["version"] == out["version"]


def test_api_503_when_redis_is_unreachable():
    c = TestClient(create_app(lambda: RedisStore("redis://127.0.0.1:1/0", "nowhere", timeout_s=0.5),
                              ApiSettings(api_key=None)))
    r = c.get("/v1/users/u1/recommendations")
    assert r.status_code == 503 and r.json()["detail"].startswith("serving store unavailable")
    assert c.get("/v1/health").status_code == 503
