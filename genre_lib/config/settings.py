"""Typed pipeline configuration: one YAML profile per environment, validated before any work starts.

Every job and the DAG go through `load_config`, so a typo in a profile, a `--set` override or the
Airflow trigger form is refused with a message naming the field, before Spark or torch start.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from genre_lib.config.base import ConfigError, _Section  # noqa: F401  (re-exported)
from genre_lib.config.data import CleanConfig, DataConfig, GenresConfig, LakeConfig
from genre_lib.config.experiments import TUNABLE, AbConfig, AbVariant, EvalConfig, SpaceSpec, TuningConfig  # noqa: F401
from genre_lib.config.models import ClassifierConfig, EncoderConfig  # noqa: F401
from genre_lib.config.moved import MOVED, check_key, check_raw, moved_message
from genre_lib.config.operations import ChecksConfig, MaintenanceConfig
from genre_lib.config.ranking import RecommendConfig, RerankConfig
from genre_lib.config.runtime import MlflowConfig, PublishConfig, SparkConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class PipelineConfig(_Section):
    """The whole profile, one section per stage or service, in the order of the night."""
    lake: LakeConfig = Field(LakeConfig(), description="Where the pipeline's tables live.")
    data: DataConfig = Field(DataConfig(), description="Where the raw interactions and the item catalogue come from.")
    clean: CleanConfig = Field(CleanConfig(), description="What the clean stage keeps of the raw interactions.")
    genres: GenresConfig = Field(GenresConfig(), description="How the genres stage weighs each user's history "
                                 "into genre weights w_uc.")
    encoder: EncoderConfig = Field(EncoderConfig(), description="The text encoder of the embed stage (and of "
                                   "the classifier's fine-tuning).")
    classifier: ClassifierConfig = Field(ClassifierConfig(), description="The genre classifier of the "
                                         "train_classifier stage.")
    recommend: RecommendConfig = Field(RecommendConfig(), description="The blend ranker of the recommend stage "
                                       "(also fitted by evaluate and tuning).")
    rerank: RerankConfig = Field(RerankConfig(), description="Re-ranking of the blend's candidates by "
                                 "gradient-boosted trees.")
    eval: EvalConfig = Field(EvalConfig(), description="Offline evaluation (the evaluate stage).")
    spark: SparkConfig = Field(SparkConfig(), description="The Spark sessions of the jobs.")
    mlflow: MlflowConfig = Field(MlflowConfig(), description="Where runs, metrics and models are tracked.")
    checks: ChecksConfig = Field(ChecksConfig(), description="Data checks on each night's inputs (after clean) "
                                 "and outputs (before publish), each blocking or a warning.")
    publish: PublishConfig = Field(PublishConfig(), description="The publish gate, the serving store and the "
                                   "recommendations-ready event.")
    maintenance: MaintenanceConfig = Field(MaintenanceConfig(), description="What the maintenance task after each "
                                           "night removes: expired lake partitions, old MLflow runs and model "
                                           "versions, old Airflow metadata.")
    tuning: TuningConfig = Field(default_factory=TuningConfig, description="Hyperparameter tuning (the "
                                 "genre_tuning DAG).")

    @model_validator(mode="after")
    def _engine_without_reranker(self) -> "PipelineConfig":
        """recommend.execution.engine: spark ranks the blend only, so it needs rerank.enabled: off."""
        if self.recommend.execution.engine == "spark" and self.rerank.enabled != "off":
            raise ValueError("recommend.execution.engine: spark ranks the blend only; set rerank.enabled: off, "
                             "or recommend.execution.engine: local")
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
    ab: AbConfig = Field(AbConfig(), description="A/B test of ranker settings.")

    @model_validator(mode="after")
    def _ab_variants_apply(self) -> "PipelineConfig":
        """Each A/B variant's overrides name existing keys with valid values; eval.folds > 1 needs ab.variants."""
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
    if dotted in MOVED:
        raise ValueError(f"tuning.space.{moved_message(dotted)}")
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
    check_key(key.strip())
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
    check_raw(raw)
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
