"""The soak: N consecutive nights of genre_nightly through a real Airflow scheduler, with faults.

    python bench/soak.py [--nights 21] [--workdir DIR] [--deadline-min 6] [--keep]      (make soak)

Everything lives under a fresh work folder: Airflow (api-server, scheduler, triggerer; LocalExecutor,
SQLite), the MLflow store, the lake, the serving store and the read API. Synthetic daily data of
steady volume is generated up front (a few warm-up days, then one day per night) and each day's raw
file is delivered just before its night, as an export would arrive. Each night is triggered with its
run date and waited for, one at a time. The nights are the default profile's (its users, items,
daily volume and 30-day history window, whose days are delivered before night 1), with shorter
retention (three nights of every snapshot, two served versions, three days of MLflow runs, a few
minutes of Airflow metadata, and five minutes of the lake's reader grace for a superseded attempt,
an hour by default: about a night here, as the hour is on real nights) so that every table reaches
its plateau within the first few nights, and a gate that lets a night drop 20% below the served one
(publish.max_drop 0.2: a 400-user night's metric moves more from night to night than the default
10% allows).

Faults, spread over nights 3 .. N-1 (the last night is a healthy one), with the outcome and the
number of alerts each must get:
  missing_day     no raw file for the night: an empty partition, the volume check blocks -> refused, 1
  late_file       a fifth of the day arrives the next night (inside clean.late_days): both published, 0
  low_volume      a tenth of the usual rows: the volume check blocks -> refused, 1
  schema_drift    the export renames its fields: every row quarantined (schema_drift) -> refused, 1
  kill_mid_write  clean is killed (SIGKILL) before its commit, Airflow retries it -> published, 1 (a warning)
  regression      popularity alone as the ranker (far below the served blend): the gate refuses it -> refused, 1
  deadline        a stage sleeps past GENRE_DEADLINE_MIN: the Deadline Alert -> published, 1
A reader calls the read API throughout; every answer must be one night's list as the lake has it.

Per night it prints each stage's wall time, disk (lake, MLflow store and artifacts, Airflow's
database), the outcome and the alerts received. At the end: rows reconciled (every delivered raw row
clean, quarantined or a duplicate in the night that last cleaned its day), API errors, mixed reads,
`wall_ratio_last_vs_median_3_7` (the last night against the median of the healthy nights 3-7) and
`disk_ratio` (disk after the last night against disk after night ceil(N/2), when every table's
retention has been reached). Writes everything to <workdir>/soak.json and prints that path last.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.airflow_cluster import Cluster, JsonInbox, airflow, airflow_env, free_port, prepare, sql  # noqa: E402

WARMUP = 29  # days delivered before night 1: with it, the default profile's whole 30-day window
FAULTS = ["missing_day", "late_file", "low_volume", "schema_drift", "kill_mid_write", "regression", "deadline"]
EXPECT = {"missing_day": ("refused", 1), "late_file": ("published", 0), "low_volume": ("refused", 1),
          "schema_drift": ("refused", 1), "kill_mid_write": ("published", 1), "regression": ("refused", 1),
          "deadline": ("published", 1), None: ("published", 0)}
DAILY = 1000  # the default profile's volume: 30,000 interactions over 30 days
SNAPSHOTS = ["items_clean", "genre_vocab", "user_genre_weights", "item_genres", "item_embeddings",
             "item_genre_scores", "recommendations"]


def profile(work: Path) -> list[str]:
    return [f"lake.root={work}/lake", f"data.path={work}/data", f"publish.sqlite_path={work}/serving/serving.db",
            "spark.shuffle_partitions=2", "publish.max_drop=0.2", "publish.keep=2",
            "maintenance.keep_nights={" + ", ".join(f"{t}: 3" for t in SNAPSHOTS) + "}",
            "maintenance.mlflow_keep_days=3", "maintenance.registry_keep=2", "maintenance.airflow_keep_days=0.006"]


def generate(work: Path, nights: int, env: dict) -> list[str]:
    """All days into <work>/all; returns the nights (the last `nights` days)."""
    last = dt.date(2026, 11, 1) + dt.timedelta(days=nights + WARMUP - 1)
    days = nights + WARMUP
    # the generator's bot lands on its end date: one day past the last night, never delivered
    sets = [*profile(work), f"data.path={work}/all", f"data.synthetic.days={days + 1}",
            f"data.synthetic.interactions={DAILY * (days + 1)}", f"data.synthetic.end_date={last + dt.timedelta(days=1)}"]
    subprocess.run([sys.executable, "-m", "genre_lib.datasets", *[a for o in sets for a in ("--set", o)]],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    (work / "data" / "interactions").mkdir(parents=True)
    shutil.copy(work / "all" / "items.jsonl", work / "data" / "items.jsonl")
    return [str(last - dt.timedelta(days=k)) for k in range(nights + WARMUP - 1, -1, -1)]


def lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()]


def deliver(work: Path, day: str, part: tuple[float, float] = (0.0, 1.0), drift: bool = False,
            name: str = "events.jsonl") -> int:
    """Day `day`'s raw rows into the data folder (the share `part` of them; `drift`: renamed fields)."""
    rows = lines(work / "all" / "interactions" / f"ds={day}" / "events.jsonl")
    rows = rows[int(len(rows) * part[0]):int(len(rows) * part[1])]
    if drift:
        rows = [ln.replace('"user_id"', '"uid"').replace('"item_id"', '"iid"') for ln in rows]
    folder = work / "data" / "interactions" / f"ds={day}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(rows) + "\n")
    return len(rows)


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class Reader(threading.Thread):
    """Calls the read API for random users until stopped; checks every answer against the lake."""

    def __init__(self, base: str, lake_root: str):
        super().__init__(daemon=True)
        self.base, self.lake_root = base, lake_root
        self.stop = threading.Event()
        self.requests = self.errors = self.mixed = self.unverified = 0
        self.users: list[str] = []
        self.expected: dict = {}
        self.problems: list[str] = []

    def lists(self, ds: str) -> dict | None:
        if ds not in self.expected:
            from genre_lib.lake.storage import Lake
            try:
                recs = Lake(self.lake_root).read_pandas("recommendations", ds, ["user_id", "rank", "item_id"])
            except Exception:
                return None
            self.expected[ds] = {u: list(g.sort_values("rank")["item_id"]) for u, g in recs.groupby("user_id")}
            self.users = sorted(self.expected[ds])
        return self.expected[ds]

    def run(self):
        served = False
        while not self.stop.wait(0.25):
            user = random.choice(self.users) if self.users else "u0"
            self.requests += 1
            try:
                with urllib.request.urlopen(f"{self.base}/v1/users/{user}/recommendations?n=10", timeout=10) as r:
                    body = json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code == 503 and not served:  # nothing published yet
                    continue
                self.errors += 1
                self.problems.append(f"HTTP {e.code} for {user}")
                continue
            except OSError as e:
                self.errors += 1
                self.problems.append(f"{type(e).__name__} for {user}: {e}")
                continue
            served = True
            want = self.lists(body["ds"])
            if want is None or user not in want:
                self.unverified += 1
                if want is not None and not self.users:
                    self.users = sorted(want)
                continue
            got = [i["item_id"] for i in body["items"]]
            if got != want[user][:len(got)] or (len(got) < 10 and len(got) != len(want[user])):
                self.mixed += 1
                self.problems.append(f"{user} ds={body['ds']}: {got[:3]}... != lake {want[user][:3]}...")


def listening(base: str, api: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the read API answers at all (503 included: nothing is published yet)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if api.poll() is not None:
            raise RuntimeError(f"the read API exited with {api.returncode}")
        try:
            urllib.request.urlopen(f"{base}/v1/health", timeout=5).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the read API at {base} did not answer in {timeout:.0f}s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nights", type=int, default=21)
    p.add_argument("--workdir", help="default: a new folder under the system's temp folder")
    p.add_argument("--deadline-min", type=float, default=6.0, help="GENRE_DEADLINE_MIN of the soak's nights")
    p.add_argument("--keep", action="store_true", help="leave the work folder")
    args = p.parse_args()
    if args.nights < 10:
        raise SystemExit("--nights: at least 10 (seven faults on nights 3 .. N-1, a healthy last night)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="genre-soak-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    inbox = JsonInbox()
    # the fault nights, spread over 3 .. N-1
    span = list(range(3, args.nights))
    at = {span[round(i * (len(span) - 1) / (len(FAULTS) - 1))]: kind for i, kind in enumerate(FAULTS)}
    env0 = airflow_env(work)
    nights = generate(work, args.nights, env0)
    warm, nights = nights[:WARMUP], nights[WARMUP:]
    fault_of = {nights[i - 1]: kind for i, kind in at.items()}
    slow = next(d for d, k in fault_of.items() if k == "deadline")
    env = airflow_env(work, GENRE_NOTIFIER_CONN="soak_alerts", AIRFLOW_CONN_SOAK_ALERTS=inbox.connection(),
                      GENRE_DEADLINE_MIN=str(args.deadline_min), GENRE_TASK_RETRIES="1", GENRE_RETRY_DELAY_S="5",
                      GENRE_FAULT_FILE=str(work / "fault"), AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
                      GENRE_LAKE_GRACE_S="300",
                      GENRE_FAIL_STAGE=f"recommend:sleep-{int(args.deadline_min * 60) + 30}@{slow}")
    delivered: dict[str, int] = {}
    for d in warm:
        delivered[d] = deliver(work, d)
    prepare(env, unpause=("genre_nightly",))
    cluster = Cluster(env, work / "logs").start("api-server", "scheduler", "triggerer")
    api_port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "genre_lib.serve", "--port", str(api_port), "--no-access-log",
                            *[a for o in profile(work) for a in ("--set", o)]], cwd=ROOT, env=env,
                           stdout=open(work / "logs" / "api.log", "w"), stderr=subprocess.STDOUT)
    reader = Reader(f"http://127.0.0.1:{api_port}", f"{work}/lake")
    listening(reader.base, api)  # the reader counts every refused call from its first one
    reader.start()
    rows, late_rest = [], None
    try:
        for i, night in enumerate(nights, start=1):
            kind = fault_of.get(night)
            if late_rest:  # yesterday's late fifth arrives tonight, inside clean.late_days
                delivered[late_rest] += deliver(work, late_rest, (0.8, 1.0), name="events-late.jsonl")
                late_rest = None
            overrides = profile(work)
            if kind == "missing_day":
                delivered[night] = 0
            elif kind == "late_file":
                delivered[night] = deliver(work, night, (0.0, 0.8))
                late_rest = night
            elif kind == "low_volume":
                delivered[night] = deliver(work, night, (0.0, 0.1))
            elif kind == "schema_drift":
                delivered[night] = deliver(work, night, drift=True)
            else:
                delivered[night] = deliver(work, night)
            if kind == "kill_mid_write":
                (work / "fault").write_text("before_manifest\n")
            if kind == "regression":  # popularity alone: far below the served blend
                overrides += ["recommend.weights={genre: 0.0, content: 0.0, cf: 0.0, popularity: 1.0}"]
            run_id = f"soak__{night}"
            conf = json.dumps({"config": "configs/default.yaml", "run_date": night, "overrides": overrides})
            seen = len(inbox.received)
            airflow(env, "dags", "trigger", "genre_nightly", "--run-id", run_id, "--conf", conf)
            rows.append(wait_night(cluster, env, work, run_id, night, kind, inbox.received, seen, i))
            rows[-1]["api_so_far"] = {"requests": reader.requests, "errors": reader.errors, "mixed": reader.mixed,
                                      "last_problems": reader.problems[-3:]}
            record_manifests(work)
            if kind == "schema_drift":  # the operator, alerted, replaces the drifted export with the right one
                delivered[night] = deliver(work, night)
            print(json.dumps(rows[-1]), flush=True)
    except BaseException as e:  # what the nights so far showed is kept, with what stopped the soak
        (work / "soak-partial.json").write_text(json.dumps({"stopped_by": repr(e), "per_night": rows,
                                                            "api": {"requests": reader.requests, "errors": reader.errors,
                                                                    "mixed": reader.mixed}}, indent=1))
        print(work / "soak-partial.json", file=sys.stderr)
        raise
    finally:
        reader.stop.set()
        api.terminate()
        cluster.stop()
        inbox.stop()
    result = summary(rows, delivered, reader, work, args)
    out = work / "soak.json"
    out.write_text(json.dumps(result, indent=1))
    if not args.keep and not args.workdir:
        for sub in ("airflow", "lake", "data", "all", "serving", "mlartifacts"):
            shutil.rmtree(work / sub, ignore_errors=True)
    print(out)
    return 0


def wait_night(cluster, env, work: Path, run_id: str, night: str, kind, received: list, seen: int, i: int) -> dict:
    t0 = time.time()
    while True:
        cluster.alive()
        state = sql(env, "SELECT state, start_date, end_date FROM dag_run WHERE run_id=?", (run_id,))
        if state and state[0][0] in ("success", "failed"):
            break
        if time.time() - t0 > 3600:
            raise TimeoutError(f"{run_id} not done after an hour; logs in {work / 'logs'}")
        time.sleep(3)
    time.sleep(4)  # an alert sent as the run ends has reached the receiver
    start, end = (dt.datetime.fromisoformat(state[0][k]) for k in (1, 2))
    tasks = {t: round((dt.datetime.fromisoformat(e) - dt.datetime.fromisoformat(s)).total_seconds(), 1)
             for t, s, e in sql(env, "SELECT task_id, start_date, end_date FROM task_instance WHERE run_id=? AND "
                                     "start_date IS NOT NULL AND end_date IS NOT NULL", (run_id,))}
    alerts = [a for a in received[seen:] if a.get("run_id") == run_id]
    outcome = outcome_of(work, run_id)
    disk = {"lake": size(work / "lake"), "mlflow": size(work / "mlflow.db") + size(work / "mlartifacts"),
            "airflow_db": size(work / "airflow" / "airflow.db"), "serving": size(work / "serving")}
    disk["total"] = sum(disk.values())
    disk["lake_tables"] = {p.name: size(p) for p in sorted((work / "lake").iterdir()) if p.is_dir()}
    return {"night": i, "ds": night, "fault": kind, "state": state[0][0], "outcome": outcome,
            "wall_s": round((end - start).total_seconds(), 1), "stages_s": tasks, "disk_bytes": disk,
            "alerts": [a.get("subject") for a in alerts]}


def outcome_of(work: Path, run_id: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.airflow_run_id = '{run_id}' and tags.stage = 'pipeline'")
    return runs[0].data.tags.get("outcome", "unknown") if runs else "unknown"


def record_manifests(work: Path) -> None:
    """Each committed day's raw_rows as clean last counted them, kept past retention."""
    from genre_lib.lake.storage import Lake

    path, lake = work / "manifests.json", Lake(f"{work}/lake")
    seen = json.loads(path.read_text()) if path.exists() else {}
    for day in lake.committed("interactions_clean"):
        seen[day] = lake.manifest("interactions_clean", day).get("raw_rows", 0)
    path.write_text(json.dumps(seen, indent=1, sort_keys=True))


def reconcile(work: Path, delivered: dict[str, int]) -> tuple[int, dict]:
    """Delivered raw rows minus what the clean stage accounted for (clean + quarantined + duplicates)
    in the last night that cleaned each day (its manifest); days retention removed are read from the
    soak's own per-night log of manifests."""
    from genre_lib.lake.storage import Lake

    lake, off = Lake(f"{work}/lake"), {}
    seen = json.loads((work / "manifests.json").read_text()) if (work / "manifests.json").exists() else {}
    for day in lake.committed("interactions_clean"):
        seen[day] = lake.manifest("interactions_clean", day).get("raw_rows", 0)
    for day, n in delivered.items():
        got = int(seen.get(day, 0))
        if got != n:
            off[day] = n - got
    return sum(abs(v) for v in off.values()), off


def summary(rows: list[dict], delivered: dict, reader: Reader, work: Path, args) -> dict:
    healthy = [r for r in rows if r["fault"] is None]
    base = [r["wall_s"] for r in healthy if 3 <= r["night"] <= 7] or [r["wall_s"] for r in healthy[:5]]
    plateau = rows[math.ceil(len(rows) / 2) - 1]
    unaccounted, off = reconcile(work, delivered)
    faults = [{"night": r["night"], "ds": r["ds"], "kind": r["fault"], "outcome": r["outcome"],
               "alerts": len(r["alerts"]), "expected": list(EXPECT[r["fault"]]),
               "as_expected": (r["outcome"], len(r["alerts"])) == EXPECT[r["fault"]]} for r in rows if r["fault"]]
    return {"nights": len(rows), "faults": faults,
            "healthy_alerts": sum(len(r["alerts"]) for r in healthy),
            "rows_unaccounted": unaccounted, "rows_off_by_day": off, "rows_delivered": sum(delivered.values()),
            "api_requests": reader.requests, "api_errors": reader.errors, "mixed_reads": reader.mixed,
            "api_unverified": reader.unverified, "api_problems": reader.problems[:10],
            "wall_ratio_last_vs_median_3_7": round(rows[-1]["wall_s"] / statistics.median(base), 3),
            "disk_ratio": round(rows[-1]["disk_bytes"]["total"] / plateau["disk_bytes"]["total"], 3),
            "disk_plateau_night": plateau["night"], "per_night": rows, "workdir": str(work),
            "deadline_min": args.deadline_min}


if __name__ == "__main__":
    sys.exit(main())
