"""Stage publish: gate the night on its evaluation, switch it into the serving store, announce it.

The gate: a night is published only if its primary model's `publish.metric` is at least the
popularity baseline's in the same evaluation, not more than `publish.max_drop` (relative)
below the night being served now, and no blocking data check of the night failed (input_checks,
output_checks); a night older than the served one (a backfill) is not switched in either.
`publish.force` overrides the gate, never a missing evaluation.

The publish: the committed `recommendations` partition (titles from `items_clean`) is written as
a new version beside the served one, switched in atomically, old versions beyond `publish.keep`
are pruned, then one "recommendations ready" event is sent. A rerun of the same run is idempotent:
the version it already published is found and no second one is written; its event is sent only if
the first attempt died before sending it.

Every decision is recorded in the lake as `publish_log/ds=D/decision.json`.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Optional

import pyarrow.dataset as pads

from genre_lib.checks.figures import failed
from genre_lib.lake.storage import Lake
from genre_lib.serve.events import EVENT_TYPE, Publisher, publisher_for
from genre_lib.serve.store import ServingStore, store_for

log = logging.getLogger("genre")

BASELINE = "popularity"
BATCH_ROWS = 200_000  # rows read from Parquet and written to the store at a time


@dataclass(frozen=True)
class GateDecision:
    publish: bool
    reason: str
    metric: float  # tonight's primary model, publish.metric
    baseline: float  # the popularity model's, same metric, same evaluation
    last: Optional[float]  # the served night's, None when nothing comparable is served
    metric_name: str = "ndcg@10"
    model: str = ""
    forced: bool = False
    last_version: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)


def read_evaluation(lake: Lake, ds: str) -> dict:
    if str(ds) not in lake.committed("evaluation"):
        raise FileNotFoundError(f"publish gate: no committed evaluation for ds={ds} under {lake.root} "
                                f"(evaluation/ds={ds}/metrics.json); run the evaluate stage first")
    return lake.read_json("evaluation", ds, "metrics.json")


def blocking_checks(lake: Lake, ds: str) -> list[str]:
    """The night's failed blocking data checks (none where a check stage did not run)."""
    out = []
    for table in ("input_checks", "output_checks"):
        if str(ds) in lake.committed(table):
            out += failed(lake.read_pandas(table, ds), "blocking")
    return out


def gate(lake: Lake, ds: str, cfg_publish, state=None) -> GateDecision:
    """Decide whether night `ds` may be published. `state` is what is served now: a ServingStore,
    the current version's manifest, or None when nothing has been published yet."""
    name = cfg_publish.metric
    payload = read_evaluation(lake, ds)
    models = payload.get("models") or {}
    primary = payload.get("primary")
    if primary not in models:
        raise ValueError(f"publish gate: evaluation ds={ds} names primary model {primary!r} but has "
                         f"metrics for {sorted(models)}")
    if BASELINE not in models:
        raise ValueError(f"publish gate: evaluation ds={ds} has no {BASELINE!r} baseline to compare with "
                         f"(models: {sorted(models)})")
    for model in (primary, BASELINE):
        if name not in models[model]:
            raise ValueError(f"publish gate: publish.metric {name!r} is not in the evaluation of "
                             f"{model!r} (has {sorted(models[model])})")
    metric, baseline = float(models[primary][name]), float(models[BASELINE][name])

    if isinstance(state, ServingStore):
        served = state.current() if state.initialised() else None
    else:
        served = state
    last, last_version, note = None, None, ""
    if served:
        m = served.get("metric") or {}
        if m.get("name") == name and m.get("value") is not None:
            last, last_version = float(m["value"]), served.get("version")
        else:
            note = f"; served version {served.get('version')} has no {name}, not compared"

    fails = []
    if not math.isfinite(metric):
        fails.append(f"{primary} {name} is {metric}")
    elif metric < baseline:
        fails.append(f"{primary} {name} {metric:.4f} < {BASELINE} {baseline:.4f}")
    drop = (last - metric) / last if last and last > 0 and math.isfinite(metric) else 0.0
    if drop > cfg_publish.max_drop + 1e-9:  # the tolerance: a drop of exactly max_drop passes
        fails.append(f"{name} {metric:.4f} is {drop:.1%} below the served night's {last:.4f} "
                     f"(version {last_version}; publish.max_drop {cfg_publish.max_drop:.0%})")
    fails += [f"blocking check {c}" for c in blocking_checks(lake, ds)]
    if served and str(served.get("ds", "")) > str(ds):  # a backfill must not replace a newer night
        fails.append(f"night {ds} is older than the served night {served.get('ds')} (version {served.get('version')})")
    if not fails:
        reason = f"ok: {primary} {name} {metric:.4f} >= {BASELINE} {baseline:.4f}" + (
            f", served {last:.4f} (max drop {cfg_publish.max_drop:.0%})" if last is not None else "") + note
        ok, forced = True, False
    elif cfg_publish.force:
        reason, ok, forced = "forced (publish.force) despite: " + "; ".join(fails) + note, True, True
    else:
        reason, ok, forced = "refused: " + "; ".join(fails) + note, False, False
    return GateDecision(ok, reason, metric, baseline, last, metric_name=name, model=primary, forced=forced,
                        last_version=last_version)


def _titles(lake: Lake, ds: str) -> dict[str, str]:
    day = lake.latest("items_clean", ds)
    if day is None:
        log.warning("publish: no items_clean on or before %s; items are served without titles", ds)
        return {}
    items = lake.read_pandas("items_clean", day, columns=["item_id", "title"])
    return dict(zip(items["item_id"].astype(str), items["title"]))


def publish(lake: Lake, ds: str, run_id: str, store: ServingStore, publisher: Publisher, *,
            keep: int = 3, decision: Optional[GateDecision] = None, metric_name: str = "ndcg@10",
            pseudonymised: bool = False, pseudonym_key_env: str = "GENRE_PSEUDONYM_KEY",
            batch_rows: int = BATCH_ROWS) -> dict:
    """Write night `ds` (run `run_id`) into `store` as a new version, switch it in, prune, announce.
    Returns the stage metrics."""
    ds = str(ds)
    t0 = time.time()
    done = store.find(ds, run_id)
    if done is not None:
        sent = 0
        if not done.get("event_sent"):
            publisher.send(_event(done))
            store.annotate(done["version"], event_sent=True)
            sent = 1
        log.info("publish %s: run %s already published as version %s", ds, run_id, done["version"])
        return {"published": 1, "already_published": 1, "version": done["version"], "rows": done["rows"],
                "users": done["users"], "events_sent": sent, "pruned": 0}
    stale = store.find(ds, run_id, include_staging=True)
    if stale is not None and stale.get("state") != "committed":
        store.discard(stale["version"])  # an earlier attempt of this run died while writing

    lake.require("recommendations", ds)
    source = lake.manifest("recommendations", ds)
    data = pads.dataset(lake.files("recommendations", ds, source), filesystem=lake.fs, format="parquet")
    cols = ["user_id", "rank", "item_id", "score", "reason"]
    has_variant = "variant" in data.schema.names
    titles = _titles(lake, ds)
    meta = {"ds": ds, "run_id": run_id, "pseudonymised": bool(pseudonymised or source.get("pseudonymised")
                                                                or source.get("pseudonymized")),
            "pseudonym_key_env": pseudonym_key_env,
            "source": {k: source.get(k) for k in ("run_id", "config_hash", "row_count", "committed_at")},
            "metric": {"name": metric_name, "value": decision.metric if decision else None,
                       "model": decision.model if decision else None,
                       "baseline": decision.baseline if decision else None,
                       "last": decision.last if decision else None},
            "gate": {"reason": decision.reason, "forced": decision.forced} if decision else None}
    variants: set = set()
    with store.begin_version(meta) as writer:
        for batch in data.to_batches(columns=cols + (["variant"] if has_variant else []), batch_size=batch_rows):
            frame = batch.to_pandas()
            frame["title"] = frame["item_id"].astype(str).map(titles)
            if has_variant:
                variants.update(v for v in frame["variant"].dropna().unique())
            writer.add_rows(frame)
        if source.get("row_count") is not None and writer.rows != int(source["row_count"]):
            raise ValueError(f"publish: recommendations ds={ds} has {writer.rows} rows, its manifest says "
                             f"{source['row_count']}")
        writer.meta["variants"] = sorted(str(v) for v in variants)
        version = writer.commit()
    pruned = store.prune(keep)
    publisher.send(_event(version))
    store.annotate(version["version"], event_sent=True)
    log.info("publish %s: version %s switched in (%d rows, %d users), pruned %s", ds, version["version"],
             version["rows"], version["users"], pruned)
    return {"published": 1, "already_published": 0, "version": version["version"], "rows": version["rows"],
            "users": version["users"], "events_sent": 1, "pruned": len(pruned),
            "publish_seconds": time.time() - t0}


def _event(meta: dict) -> dict:
    m = meta.get("metric") or {}
    return {"type": EVENT_TYPE, "ds": meta["ds"], "run_id": meta["run_id"], "version": meta["version"],
            "rows": meta["rows"], "users": meta.get("users"),
            "metric": {"name": m.get("name"), "value": m.get("value")},
            "variants": meta.get("variants", []), "store": meta.get("store"),
            "committed_at": meta.get("committed_at")}


def run(ctx) -> dict:
    """Stage entry point: gate, publish when allowed, record the decision in the lake."""
    pc = ctx.cfg.publish
    store = store_for(ctx.cfg)
    try:
        decision = gate(ctx.lake, ctx.ds, pc, store)
        log.info("publish gate %s: %s", ctx.ds, decision.reason)
        result: dict = {"published": 0}
        if decision.publish:
            publisher = publisher_for(ctx.cfg)
            try:
                result = publish(ctx.lake, ctx.ds, ctx.run_id, store, publisher, keep=pc.keep, decision=decision,
                                 metric_name=pc.metric, pseudonymised=ctx.cfg.recommend.privacy.pseudonymize_users,
                                 pseudonym_key_env=ctx.cfg.recommend.privacy.pseudonym_key_env)
            finally:
                getattr(publisher, "close", lambda: None)()
        payload = {"ds": ctx.ds, "run_id": ctx.run_id, "decision": decision.to_dict(), "result": result,
                   "store": pc.store, "events": pc.events}
        ctx.lake.write_json("publish_log", ctx.ds, "decision.json", payload,
                            ctx.manifest(published=result["published"]))
        _tell_parent_run(ctx, decision, result)
    finally:
        store.close()
    return {**result, "gate_passed": int(decision.publish), "gate_forced": int(decision.forced),
            "gate_metric": decision.metric, "gate_baseline": decision.baseline,
            **({"gate_last": decision.last} if decision.last is not None else {}),
            "gate_reason": decision.reason}


def _tell_parent_run(ctx, decision: GateDecision, result: dict) -> None:
    """The night's MLflow parent run says whether the night was published, and why."""
    from mlflow.tracking import MlflowClient

    from genre_lib.orchestration.tracking import parent_run, tracking_uri

    client = MlflowClient(tracking_uri(ctx.cfg))
    parent = parent_run(ctx.cfg, ctx.run_id, ctx.ds)
    client.set_tag(parent, "published", str(bool(result.get("published"))).lower())
    client.set_tag(parent, "gate_reason", decision.reason[:5000])
