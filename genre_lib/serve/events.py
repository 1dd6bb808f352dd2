"""The "recommendations ready" event, sent once a night is switched into the serving store.

A publisher is anything with `send(event: dict)`. Two come with the project:
- `LogPublisher`: appends JSON lines to `<lake root>/recommendations-ready.jsonl`, the embedded
  default (no server); consumers tail the file. On an object store, which cannot append, each event is
  its own object under `<lake root>/_events/recommendations-ready/` (`ObjectLogPublisher`), named so
  that listing the prefix gives them in order.
- `RedisStreamPublisher`: XADD to a Redis Stream (`genre:recommendations-ready`), trimmed to about
  the last 1000 events; consumers read it with XREAD/XREADGROUP.
The Airflow Asset event is emitted by the DAG, not here.

Another broker (Kafka, NATS, RabbitMQ, a webhook) is one new file: a class with `send(event)` that
serialises the dict as JSON (`json.dumps(event, sort_keys=True)`) and delivers it, plus one branch
in `publisher_for`. Delivery is at least once: a publish retried after a crash between the send
and its bookkeeping sends the event again, so consumers de-duplicate on (ds, run_id, version).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

EVENT_TYPE = "recommendations-ready"
LOG_NAME = "recommendations-ready.jsonl"


@runtime_checkable
class Publisher(Protocol):
    def send(self, event: dict) -> None: ...


class LogPublisher:
    """One JSON line per event, appended with a single write (O_APPEND keeps lines whole)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def send(self, event: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(event, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


class ObjectLogPublisher:
    """One JSON object per event, `<utc time>-<ds>-<version>.json`, written in one PUT."""

    def __init__(self, lake_root: str):
        from genre_lib.lake.storage import Lake

        self.lake = Lake(lake_root)
        self.prefix = self.lake.path("_events", EVENT_TYPE)

    def send(self, event: dict) -> None:
        import time
        import uuid

        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{event.get('ds', '')}-{event.get('version', '')}" \
               f"-{uuid.uuid4().hex[:8]}.json"
        self.lake.fs.create_dir(self.prefix, recursive=True)
        with self.lake.fs.open_output_stream(f"{self.prefix}/{name}") as f:
            f.write(json.dumps(event, sort_keys=True, default=str).encode())

    def read(self) -> list[dict]:
        import pyarrow.fs as pafs

        infos = self.lake.fs.get_file_info(pafs.FileSelector(self.prefix, allow_not_found=True))
        out = []
        for path in sorted(i.path for i in infos if i.type == pafs.FileType.File):
            with self.lake.fs.open_input_stream(path) as f:
                out.append(json.loads(f.read()))
        return out


class RedisStreamPublisher:
    """XADD with a few top-level fields for filtering and the whole event as JSON in `data`."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", stream: str = "genre:recommendations-ready",
                 maxlen: int = 1000, client=None):
        import redis

        self.r = client or redis.Redis.from_url(url, decode_responses=True, socket_timeout=5,
                                                socket_connect_timeout=5)
        self.stream = stream
        self.maxlen = maxlen

    def send(self, event: dict) -> str:
        fields = {"type": event.get("type", EVENT_TYPE), "ds": str(event.get("ds", "")),
                  "run_id": str(event.get("run_id", "")), "version": str(event.get("version", "")),
                  "data": json.dumps(event, sort_keys=True, default=str)}
        return self.r.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)

    def close(self) -> None:
        self.r.close()


def publisher_for(cfg) -> Publisher:
    """The publisher of a pipeline config's `publish.events`."""
    pc = cfg.publish
    if pc.events == "redis":
        return RedisStreamPublisher(pc.redis_url, stream=f"{pc.redis_prefix}:{EVENT_TYPE}")
    if "://" in cfg.lake_root and not cfg.lake_root.startswith("file://"):
        return ObjectLogPublisher(cfg.lake_root)
    root = cfg.lake_root[len("file://"):] if cfg.lake_root.startswith("file://") else cfg.lake_root
    return LogPublisher(Path(root) / LOG_NAME)
