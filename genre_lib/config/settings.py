"""Typed pipeline configuration: one YAML profile per environment, validated before any work starts.

Every job and the DAG go through `load_config`, so a typo in a profile, a `--set` override or the
Airflow trigger form is refused with a message naming the field, before Spark or torch start.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from genre_lib.config.base import ConfigError, _Section  # noqa: F401  (re-exported)
from genre_lib.config.models import ClassifierConfig, EncoderConfig  # noqa: F401
from genre_lib.config.experiments import TUNABLE, AbConfig, AbVariant, EvalConfig, SpaceSpec, TuningConfig  # noqa: F401

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class LakeConfig(_Section):
    root: str = "lake"

    @field_validator("root")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class SyntheticConfig(_Section):
    users: int = Field(400, ge=1)
    items: int = Field(600, ge=1)
    interactions: int = Field(30_000, ge=0)
    days: int = Field(30, ge=1)
    end_date: dt.date = dt.date(2026, 11, 22)
    dirty_share: float = Field(0.02, ge=0, le=0.5)
    drift: float = Field(0.3, ge=0, le=1)
    seed: int = 42
    file_format: Literal["jsonl", "csv", "parquet"] = "jsonl"


class DataConfig(_Section):
    format: Literal["synthetic", "movielens-100k", "movielens-csv", "raw"] = "synthetic"
    path: str = "data/synthetic"
    synthetic: SyntheticConfig = SyntheticConfig()


class CleanConfig(_Section):
    min_ts: dt.datetime = dt.datetime(1995, 1, 1)
    max_events_per_user_day: int = Field(500, ge=1)
    dedupe_window_s: int = Field(60, ge=0)
    late_days: int = Field(2, ge=0)
    rating_min: float = 0.5
    rating_max: float = 5.0
    events: list[str] = ["view", "click", "rate", "purchase"]
    # first run on an empty lake cleans every earlier raw day that has no committed partition yet
    catch_up: bool = True


class GenresConfig(_Section):
    lookback_days: Optional[int] = Field(None, ge=1)
    multi_genre: Literal["split", "full"] = "split"
    rating_weighted: bool = False
    event_weights: dict[str, float] = {"view": 1.0, "click": 1.0, "rate": 1.0, "purchase": 2.0}
    half_life_days: Optional[float] = Field(None, gt=0)
    shrinkage: float = Field(0.0, ge=0)
    min_interactions: int = Field(1, ge=1)

    @field_validator("event_weights")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, w in v.items() if w < 0]
        if bad:
            raise ValueError(f"weights must be >= 0, negative for {bad}")
        return v


class RecommendWeights(_Section):
    # Scorers are standardised per user before blending, so these are relative pulls. cf carries
    # the ranking; the others break its ties and cover cold items (tuned on ML-100k, both protocols).
    genre: float = Field(0.05, ge=0)
    content: float = Field(0.05, ge=0)
    cf: float = Field(1.0, ge=0)
    popularity: float = Field(0.0, ge=0)  # hurts on ML-100k once cf is in; kept for other data

    @model_validator(mode="after")
    def _some_weight(self) -> "RecommendWeights":
        if self.genre + self.content + self.cf + self.popularity <= 0:
            raise ValueError("at least one weight must be > 0")
        return self


class RecommendConfig(_Section):
    top_n: int = Field(20, ge=1, le=1000)
    weights: RecommendWeights = RecommendWeights()
    gamma: float = Field(0.0, ge=0, le=1)
    # genre scorer, as P(i|u) = sum_c P(c|u) P(i|c) with P(c|u) = w_uc: "seed" ranks by the seed's
    # R(u,i) (P(i|c) ~ s(i,c)); "share" takes P(i|c) uniform within genre c (a big genre does not
    # crowd out a small one); "popularity" takes P(i|c) ~ s(i,c) x the item's training users + 1
    # (genre-conditional popularity); "mixture" fits tau_u and P(i|c) by EM (genre_lib/ranking/mixture.py:
    # mixture_passes over the users, mixture_steps per user). Column genre_r holds the seed's R.
    genre_scorer: Literal["seed", "share", "popularity", "mixture"] = "seed"
    mixture_passes: int = Field(10, ge=1, le=100)
    mixture_steps: int = Field(5, ge=1, le=100)
    block_users: int = Field(4096, ge=1)
    # item-item autoencoder (EASE family): L2 penalty lambda, and the dropout emphasis p of DLAE
    # (Steck 2020; penalty p/(1-p) * item count on each item). p = 0 is EASE^R. Tuned on ML-100k.
    cf_reg: float = Field(200.0, gt=0)
    cf_dropout: float = Field(0.67, ge=0, lt=1)
    # cf input x_u: None = binary history; h > 0 = the user's k-th newest item weighted 0.5^(k/h)
    # (B is still fit on the binary history). Pays off when the next items follow the last ones.
    cf_recency_half_life: Optional[float] = Field(None, gt=0)
    # a > 0: the cf model (B and x_u) reads (rating / rating_max) ** a instead of 1 per rated item
    # (an event without a rating counts 1): a 5-star film says more about a user than a 1-star one,
    # while every rated film still counts as seen. 0 = binary. Tuned on ML-100k.
    cf_rating_power: float = Field(0.0, ge=0, le=2)
    # EASE inverts an items x items Gram matrix: beyond this many items (with interactions) the cf
    # scorer is a sparse item-kNN (cosine, cf_knn_neighbours per item) over every item instead
    cf_max_items: int = Field(20_000, ge=1)
    cf_knn_neighbours: int = Field(100, ge=1)
    pseudonymize_users: bool = False
    pseudonym_key_env: str = "GENRE_PSEUDONYM_KEY"
    # local: the all-user top-N on the driver; spark: user blocks ranked on the executors, the
    # fitted model shipped to them once as a lake artifact (genre_lib/ranking/spark_rank.py)
    engine: Literal["local", "spark"] = "local"
    user_block_rows: int = Field(2_000_000, ge=1)  # past this many interactions, fit and rank by user block (user_blocks.py)


class RerankConfig(_Section):
    """The learned second stage (genre_lib/ranking/rerank.py): LightGBM lambdarank re-orders the blend's top
    `candidates` items per user. It is trained on a split of the stage's own data by eval.protocol
    (labels: the inner holdout's items; early stopping and the auto decision on a `val_share` slice
    of those users). off: the blend alone, every table as without a re-ranker; on: always re-rank;
    auto: re-rank only if it beats the blend's nDCG@eval.k on that validation slice."""
    enabled: Literal["auto", "on", "off"] = "off"
    candidates: int = Field(200, ge=2, le=5000)
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    n_estimators: int = Field(300, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    val_share: float = Field(0.2, gt=0, lt=1)
    max_train_users: Optional[int] = Field(2000, ge=10)  # cost cap: a seeded sample of labelled users
    last_items: int = Field(5, ge=1)  # the user's newest items the sequence features compare with
    ablations: bool = True  # evaluate: retrain without each feature group (rerank-<group>)
    # recommend trains the trees at most once per N nights: a night reuses the newest `genre-reranker`
    # version registered for the same config on one of the N nights up to it (never a later night's); 1: every night
    retrain_days: int = Field(1, ge=1)
    threads: int = Field(2, ge=1)
    seed: int = 7

    @field_validator("enabled", mode="before")
    @classmethod
    def _yaml_on_off(cls, v):
        # YAML 1.1 reads a bare on/off as a boolean: `enabled: on` means "on"
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


class SparkConfig(_Section):
    master: str = "local[*]"
    shuffle_partitions: int = Field(8, ge=1)
    driver_memory: str = "2g"
    conf: dict[str, str] = {}  # extra Spark settings, e.g. the GPU resources of a cluster profile

    @field_validator("conf")
    @classmethod
    def _gpu_only_on_clusters(cls, v: dict, info):
        # local mode has no resource scheduler: GPU amounts belong to cluster profiles only
        gpu = [k for k in v if ".resource.gpu." in k]
        master = info.data.get("master", "")
        if gpu and master.startswith("local"):
            raise ValueError(f"GPU resource settings {gpu} need a cluster master, not {master!r}")
        return v


class MlflowConfig(_Section):
    tracking_uri: Optional[str] = None  # null: env MLFLOW_TRACKING_URI, else sqlite in the repo
    experiment: str = "genre-nightly"


class PublishConfig(_Section):
    """Gate and publish (genre_lib.stages.publish) and the read API (genre_lib.serve)."""
    store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str = "serving/serving.db"  # relative paths: to the project root
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "genre"
    events: Literal["log", "redis"] = "log"
    metric: str = "ndcg@10"
    max_drop: float = Field(0.1, ge=0, le=1)  # relative drop allowed against the last published night
    keep: int = Field(3, ge=1)  # published versions kept in the store, the current one always
    force: bool = False


class PipelineConfig(_Section):
    lake: LakeConfig = LakeConfig()
    data: DataConfig = DataConfig()
    clean: CleanConfig = CleanConfig()
    genres: GenresConfig = GenresConfig()
    encoder: EncoderConfig = EncoderConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    recommend: RecommendConfig = RecommendConfig()
    rerank: RerankConfig = RerankConfig()
    eval: EvalConfig = EvalConfig()
    spark: SparkConfig = SparkConfig()
    mlflow: MlflowConfig = MlflowConfig()
    publish: PublishConfig = PublishConfig()
    tuning: TuningConfig = Field(default_factory=TuningConfig)

    @model_validator(mode="after")
    def _engine_without_reranker(self) -> "PipelineConfig":
        if self.recommend.engine == "spark" and self.rerank.enabled != "off":
            raise ValueError("recommend.engine: spark ranks the blend only; set rerank.enabled: off, or engine: local")
        return self

    @model_validator(mode="after")
    def _tunable_keys(self) -> "PipelineConfig":
        """Each key of tuning.space names a value of this config, and each end or choice is valid for it."""
        from typing import Annotated

        from pydantic import TypeAdapter

        for key, spec in self.tuning.space.items():
            if not key.startswith(TUNABLE):
                raise ValueError(f"tuning.space.{key}: not tunable (only {', '.join(t + '*' for t in TUNABLE)})")
            info = config_field(key)
            check = TypeAdapter(Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation)
            for value in spec.values():
                try:
                    check.validate_python(value)
                except ValidationError as e:
                    raise ValueError(f"tuning.space.{key}: {value!r} is not a valid value "
                                     f"({e.errors()[0]['msg']})") from None
        return self
    ab: AbConfig = AbConfig()

    @model_validator(mode="after")
    def _ab_variants_apply(self) -> "PipelineConfig":
        # each variant's overrides must name existing keys and give valid values: checked by
        # applying them now, as the ranker will, so a bad variant fails before any work starts
        for v in self.ab.variants:
            try:
                with_overrides(self, v.overrides)
            except ConfigError as e:
                raise ValueError(f"ab.variants[{v.name}].overrides: {e}") from None
        if self.eval.folds > 1 and not self.ab.variants:
            raise ValueError(f"eval.folds: {self.eval.folds} folds cross-validate the A/B variants; "
                             "configure ab.variants or set eval.folds: 1")
        return self

    # --- derived paths: relative paths are relative to the project root, not the caller's cwd,
    # because Airflow workers and spark-submit start in other directories.
    @property
    def lake_root(self) -> str:
        return resolve_path(self.lake.root)

    @property
    def data_path(self) -> str:
        return resolve_path(self.data.path)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def config_field(dotted: str):
    """The pydantic FieldInfo of a leaf `section.key[.key]` of PipelineConfig; ValueError naming
    the first part that does not exist or is a section."""
    model, info = PipelineConfig, None
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = getattr(model, "model_fields", None) if isinstance(model, type) else None
        if fields is None or part not in fields:
            raise ValueError(f"tuning.space.{dotted}: no such key in the config ({'.'.join(parts[:i + 1])})")
        info = fields[part]
        model = info.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        raise ValueError(f"tuning.space.{dotted}: is a section, not a value")
    return info


def resolve_path(p: str) -> str:
    if "://" in p:
        return p
    path = Path(p).expanduser()
    return str(path if path.is_absolute() else (PROJECT_ROOT / path).resolve())


def parse_run_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"run_date: {value!r} is not a date in the form YYYY-MM-DD") from None


def _parse_value(value: str):
    """YAML scalars and lists (`5`, `null`, `[a, b]`); anything YAML can't parse stays a string,
    e.g. a text template like `{title} {plot}`, and is then type-checked by the model."""
    if not value.strip():
        return None
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _apply_override(raw: dict, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected dotted.key=value")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    model = PipelineConfig
    for i, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is not None and part not in fields:
            raise ConfigError(f"{'.'.join(parts[:i + 1])}: unknown key")
        annotation = fields[part].annotation if fields is not None else None
        if i == len(parts) - 1:
            node[part] = value if annotation is str else _parse_value(value)  # strings stay verbatim
            return
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts[:i + 1])}: not a section")
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML profile, apply `dotted.key=value` overrides, validate; ConfigError names the field."""
    raw: dict = {}
    if path:
        p = Path(resolve_path(str(path)))
        if not p.is_file():
            raise ConfigError(f"config: file not found: {path}")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config: {path} is not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config: {path} must hold a mapping of sections")
    for item in overrides or []:
        _apply_override(raw, item)
    return _validate(raw)


def _validate(raw: dict) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            msgs.append(f"{loc}: {msg}" if loc else msg)  # a whole-config check names its fields itself
        raise ConfigError("; ".join(msgs)) from None


def with_overrides(cfg: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """`cfg` without its `ab` section (and eval.folds), with `{dotted.key: value}` applied as `--set key=value` would
    apply them, validated: the config an A/B variant runs with. ConfigError names the field."""
    raw = cfg.to_dict()
    raw.pop("ab", None)
    raw["eval"]["folds"] = 1  # folds cross-validate the A/B comparison, which a variant alone is not
    set_values(raw, overrides)
    return _validate(raw)


def with_values(cfg: PipelineConfig, values: dict[str, Any]) -> PipelineConfig:
    """`cfg` with `{dotted.key: value}` set as `--set key=value` would set them, validated."""
    raw = cfg.to_dict()
    set_values(raw, values)
    return _validate(raw)


def set_values(raw: dict, values: dict[str, Any]) -> None:
    """Set `{dotted.key: value}` in a raw profile mapping through the --set path (the key walk, then
    YAML parsing): a string passes as written, any other value as JSON, which YAML reads back as is."""
    for key, value in values.items():
        _apply_override(raw, f"{key}={value if isinstance(value, str) else json.dumps(value)}")
