"""Read API under load while a new night is switched in (issue 17).

    python bench/serve_load.py [--users 100000 --top 20 --rate 200 --seconds 20 --publish-at 1 --after-switch 5]

1. writes a synthetic serving version (users x top items) into a temp SQLite store;
2. starts the API (`python -m genre_lib.serve`, uvicorn, 1 worker) on a free 127.0.0.1 port;
3. drives an open-loop load: requests are scheduled at a fixed rate whatever the answers do, and
   latency counts from the scheduled send time, so a stall shows up in the tail instead of
   silently lowering the rate (no coordinated omission);
4. at --publish-at seconds a second process writes a whole new version, switches it in and prunes
   the old one (publish.keep=1), like the nightly publish; it runs at nice --publisher-nice; the
   load lasts --seconds, longer if needed to go on --after-switch seconds past the switch;
5. checks every answer: all its items must come from one version (each item id and reason carries
   its version) and equal that version's list for the user; 5% of the users are unknown and get
   the version's cold-start list, which must also be of one version.

Prints p50/p90/p99/max latency, throughput, errors, mixed reads, answers per version, and the
latency inside the publish window. All three processes share this machine's cores.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from genre_lib.serve.store import SqliteStore  # noqa: E402

N_ITEMS = 5000
STEP_U, STEP_R = 7919, 104729  # STEP_R is coprime with N_ITEMS: a user's items are distinct


def item_index(version: int, users: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    return (users * STEP_U + ranks * STEP_R + version * 15485863) % N_ITEMS


def expected(version: int, user: int, n: int) -> list[str]:
    idx = item_index(version, np.full(n, user), np.arange(n))
    return [f"v{version}-i{i:05d}" for i in idx]


def write_version(db: str, users: int, top: int, keep: int | None = None, chunk_users: int = 20_000) -> dict:
    """One whole version written through the store's writer, switched in, then (keep) pruning."""
    store = SqliteStore(db)
    t0 = time.time()
    with store.begin_version({"ds": "2026-11-22", "run_id": f"bench-{time.time_ns()}"}) as w:
        v = w.version
        for start in range(0, users, chunk_users):
            u = np.arange(start, min(users, start + chunk_users))
            uu, rr = np.repeat(u, top), np.tile(np.arange(top), len(u))
            idx = item_index(v, uu, rr)
            w.add_rows(pd.DataFrame({
                "user_id": [f"user{x}" for x in uu], "rank": rr + 1,
                "item_id": [f"v{v}-i{i:05d}" for i in idx], "title": [f"Title of item {i}" for i in idx],
                "score": (top - rr).astype(float), "reason": f"v{v} | genre: Drama | like: Some Earlier Film"}))
        t_write = time.time()
        meta = w.commit()
    t_switch = time.time()
    pruned = store.prune(keep) if keep else []
    t_end = time.time()
    store.close()
    return {"version": meta["version"], "rows": meta["rows"], "write_s": t_write - t0, "commit_s": t_switch - t_write,
            "prune_s": t_end - t_switch, "pruned": pruned, "start": t0, "switched_at": t_switch, "end": t_end}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(base: str, args, users: int, top: int, on_publish):
    import httpx

    rng = random.Random(7)
    results: list[dict] = []
    total = int(args.rate * args.seconds)  # at least; see --after-switch
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as client:
        async def one(scheduled: float, user: str, known: bool):
            sent = time.perf_counter()
            rec = {"scheduled": scheduled, "user": user, "known": known}
            try:
                r = await client.get(f"/v1/users/{user}/recommendations", params={"n": top})
                rec["status"] = r.status_code
                if r.status_code == 200:
                    rec["body"] = r.json()
            except Exception as e:  # noqa: BLE001 - every failure is counted as an error
                rec["status"] = f"{type(e).__name__}"
            done = time.perf_counter()
            rec["latency"], rec["service"], rec["done"] = done - scheduled, done - sent, done
            results.append(rec)

        tasks, published = [], None
        t0 = time.perf_counter()
        shift = time.time() - time.perf_counter()
        i = 0
        while True:
            scheduled = t0 + i / args.rate
            if i >= total and published is not None and published.done():
                if scheduled >= published.result()["switched_at"] - shift + args.after_switch:
                    break
            i += 1
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if published is None and scheduled - t0 >= args.publish_at:
                published = asyncio.ensure_future(on_publish())
            known = rng.random() >= 0.05
            user = f"user{rng.randrange(users)}" if known else f"stranger{rng.randrange(10**9)}"
            tasks.append(asyncio.ensure_future(one(scheduled, user, known)))
        await asyncio.gather(*tasks)
        pub = await published if published else None
    return results, pub, t0


def check(rec: dict, top: int) -> bool:
    """True when the answer is wholly of the version it names and is that version's list."""
    body = rec["body"]
    v = body["version"]
    items = body["items"]
    if not items or any(not i["item_id"].startswith(f"v{v}-") for i in items):
        return False
    if rec["known"]:
        uid = int(rec["user"][len("user"):])
        return (body["personalised"] and [i["item_id"] for i in items] == expected(v, uid, top)
                and all(i["reason"].startswith(f"v{v} ") for i in items))
    return not body["personalised"] and all(i["reason"] == "popular" for i in items)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--publish-at", type=float, default=1.0, help="seconds into the load")
    p.add_argument("--after-switch", type=float, default=5.0,
                   help="the load goes on at least this long after the switch, past --seconds if need be")
    p.add_argument("--publisher-nice", type=int, default=10)
    p.add_argument("--write-version", metavar="DB", help=argparse.SUPPRESS)  # the publisher process
    p.add_argument("--keep", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.write_version:
        print(json.dumps(write_version(args.write_version, args.users, args.top, keep=args.keep)))
        return 0

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    db = str(tmp / "serving.db")
    first = write_version(db, args.users, args.top)
    print(f"version {first['version']}: {first['rows']:,} rows written in {first['write_s']:.1f} s "
          f"(+{first['commit_s']:.2f} s cold start and switch); store {os.path.getsize(db) / 2**20:.0f} MiB")

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GENRE_API_KEY"}
    server = subprocess.Popen([sys.executable, "-m", "genre_lib.serve", "--config", "configs/default.yaml",
                               "--set", f"publish.sqlite_path={db}", "--host", "127.0.0.1", "--port", str(port),
                               "--no-access-log", "--log-level", "warning"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("the API did not come up")
            time.sleep(0.2)

        async def publish_now():
            cmd = [sys.executable, str(Path(__file__).resolve()), "--write-version", db, "--users", str(args.users),
                   "--top", str(args.top), "--keep", "1"]
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
                preexec_fn=(lambda: os.nice(args.publisher_nice)) if args.publisher_nice else None)
            out, _ = await proc.communicate()
            return json.loads(out.decode().strip().splitlines()[-1])

        results, pub, t0 = asyncio.run(load(base, args, args.users, args.top, publish_now))
    finally:
        server.terminate()
        server.wait(timeout=30)

    ok = [r for r in results if r["status"] == 200]
    errors = len(results) - len(ok)
    mixed = sum(1 for r in ok if not check(r, args.top))
    lat = np.array([r["latency"] for r in results]) * 1000
    service = np.array([r["service"] for r in results]) * 1000
    span = max(r["done"] for r in results) - t0
    per_version: dict = {}
    for r in ok:
        per_version[r["body"]["version"]] = per_version.get(r["body"]["version"], 0) + 1
    # the publish window in the load's clock (perf_counter and time differ by a constant)
    shift = time.time() - time.perf_counter()
    in_window = np.array([pub["start"] - shift <= r["scheduled"] <= pub["end"] - shift for r in results])

    def pct(a, q):
        return float(np.percentile(a, q)) if len(a) else float("nan")

    print(f"load: {len(results)} requests at {args.rate:g}/s open loop for {len(results) / args.rate:g} s, n={args.top}, "
          f"{args.users:,} users (5% unknown), 1 uvicorn worker, SQLite store")
    print(f"latency ms (from scheduled send): p50 {pct(lat, 50):.1f}  p90 {pct(lat, 90):.1f}  "
          f"p99 {pct(lat, 99):.1f}  max {lat.max():.1f}")
    print(f"service ms (from actual send):    p50 {pct(service, 50):.1f}  p99 {pct(service, 99):.1f}")
    print(f"throughput {len(ok) / span:.1f} answers/s over {span:.1f} s; errors {errors}; mixed reads {mixed}")
    print(f"answers per version: {dict(sorted(per_version.items()))}")
    print(f"publish of version {pub['version']} ({pub['rows']:,} rows, nice {args.publisher_nice}) "
          f"from t={pub['start'] - shift - t0:.1f} s: write {pub['write_s']:.1f} s, switch {pub['commit_s']:.2f} s "
          f"at t={pub['switched_at'] - shift - t0:.1f} s, prune of version {pub['pruned']} {pub['prune_s']:.1f} s")
    print(f"latency ms inside the publish window ({in_window.sum()} requests): p50 {pct(lat[in_window], 50):.1f}  "
          f"p99 {pct(lat[in_window], 99):.1f}; outside ({(~in_window).sum()}): p50 {pct(lat[~in_window], 50):.1f}  "
          f"p99 {pct(lat[~in_window], 99):.1f}")
    print(f"machine: {os.cpu_count()} cores, 1-min load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after (this bench alone adds about 2)")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return 1 if errors or mixed else 0


if __name__ == "__main__":
    raise SystemExit(main())
