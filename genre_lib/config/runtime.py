"""Profile sections of what the pipeline runs on and hands its results to: Spark sessions (spark;
genre_lib/lake/spark.py), MLflow tracking (mlflow; genre_lib/orchestration/tracking.py) and the publish
gate with the serving store and its events (publish; genre_lib/stages/publish.py, genre_lib/serve/)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from genre_lib.config.base import _Section


class SparkConfig(_Section):
    master: str = Field("local[*]", description="Master of the Spark session a job opens itself: local[*], "
                        "spark://host:port, yarn or k8s://...; under spark-submit (the DAG's tasks) the submit "
                        "command's master wins.")
    shuffle_partitions: int = Field(8, ge=1, description="spark.sql.shuffle.partitions of every session.")
    driver_memory: str = Field("2g", description="spark.driver.memory (a JVM size such as 2g) of a session a job "
                               "opens itself; under spark-submit the submit command sets it.")
    conf: dict[str, str] = Field({}, description="Extra Spark settings (key -> string) for every session, e.g. the "
                                 "GPU resources of a cluster profile.")

    @field_validator("conf")
    @classmethod
    def _gpu_only_on_clusters(cls, v: dict, info):
        """*.resource.gpu.* keys need a cluster master, not local[...]"""
        # local mode has no resource scheduler: GPU amounts belong to cluster profiles only
        gpu = [k for k in v if ".resource.gpu." in k]
        master = info.data.get("master", "")
        if gpu and master.startswith("local"):
            raise ValueError(f"GPU resource settings {gpu} need a cluster master, not {master!r}")
        return v


class MlflowConfig(_Section):
    tracking_uri: Optional[str] = Field(None, description="MLflow tracking URI; null: the environment's "
                                        "MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db.")
    experiment: str = Field("genre-nightly", description="MLflow experiment of the nightly runs (one parent run "
                            "per night, a child run per stage).")


class PublishConfig(_Section):
    """Read by the gate and publish (genre_lib.stages.publish) and by the read API (genre_lib.serve)."""
    store: Literal["sqlite", "redis"] = Field("sqlite", description="Serving store the night is published to and "
                                              "the read API reads: sqlite (the file sqlite_path) or redis "
                                              "(redis_url, keys under redis_prefix).")
    sqlite_path: str = Field("serving/serving.db", description="store sqlite: the database file (a relative path "
                             "is relative to the project root).")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis of the store (store redis) and of the "
                           "event stream (events redis).")
    redis_prefix: str = Field("genre", description="Prefix of the store's Redis keys and of the event stream "
                              "<prefix>:recommendations-ready.")
    events: Literal["log", "redis"] = Field("log", description="Where the recommendations-ready event goes: log "
                                            "(appended to <lake root>/recommendations-ready.jsonl; a local lake "
                                            "only) or redis (the stream on redis_url).")
    metric: str = Field("ndcg@10", description="Evaluation metric of the gate (a key of the evaluate stage's "
                        "metrics.json, e.g. ndcg@10): the night's primary model must reach the popularity "
                        "baseline's.")
    max_drop: float = Field(0.1, ge=0, le=1, description="Largest relative drop of metric below the night served "
                            "now that is still published.")
    keep: int = Field(3, ge=1, description="Published versions kept in the store, the current one always.")
    force: bool = Field(False, description="Publish even when the gate refuses (never without an evaluation).")
