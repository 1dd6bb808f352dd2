"""Profile sections for experiments on the ranker: offline evaluation (genre_lib/stages/evaluate.py), A/B
variants (genre_lib/ranking/ab.py) and the tuning study (genre_lib/evaluation/tuning.py). Whether a tuned or
overridden key exists in the whole config is checked by config.PipelineConfig, which holds these
sections."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from genre_lib.config.base import _Section


class EvalConfig(_Section):
    # temporal: each user's last holdout_share by time; stratified: Recommenders' split (ML-100k's
    # published tables); cold_items: a cold_item_share of items held out with all their interactions,
    # in turn for each of cold_folds disjoint item folds (the metrics their mean; genre_lib/evaluation/cold_eval.py)
    protocol: Literal["temporal", "stratified", "cold_items"] = "temporal"
    k: int = Field(10, ge=1)
    holdout_share: float = Field(0.2, gt=0, lt=1)
    cold_item_share: float = Field(0.2, gt=0, lt=1)
    cold_folds: int = Field(1, ge=1)
    seed: int = 42
    # N > 1: user-level k-fold cross-validation of the A/B variants (genre_lib/evaluation/ab_eval.py): users in
    # N seeded folds, each fold's users tested on their holdout while everyone else's history trains
    folds: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _folds_split_users(self) -> "EvalConfig":
        if self.folds > 1 and self.protocol == "cold_items":
            raise ValueError("folds > 1 splits users, cold_items holds out items: use protocol temporal or stratified")
        if self.cold_folds * self.cold_item_share > 1 + 1e-9:
            raise ValueError(f"cold_folds x cold_item_share is {self.cold_folds * self.cold_item_share:g}: disjoint "
                             "item folds need it at most 1")
        return self


# A user's variant is a keyed hash of the user id: names end up in MLflow metric keys (ab.<name>.*)
# and as keys of metrics.json's variants_ab beside "difference", hence the restricted spelling.
AB_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# These would mix pseudonymised and raw ids in one table, so they can't differ between variants.
AB_FIXED = ("recommend.pseudonymize_users", "recommend.pseudonym_key_env")


class AbVariant(_Section):
    name: str = Field(pattern=AB_NAME)
    share: float = Field(gt=0, le=1)
    overrides: dict[str, Any] = {}  # dotted recommend.* key -> value, applied like `--set key=value`

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in ("difference", "diff"):
            raise ValueError(f"{v!r} is reserved (the difference between the first two variants)")
        return v


class AbConfig(_Section):
    """A/B variants of the ranker (genre_lib/ranking/ab.py): no variants = A/B off. Users are assigned by
    HMAC-SHA256(salt, user id), so a user keeps their variant until the salt changes."""
    salt: str = ""
    variants: list[AbVariant] = []

    @model_validator(mode="after")
    def _well_formed(self) -> "AbConfig":
        if not self.variants and not self.salt:
            return self  # A/B off
        if len(self.variants) < 2:
            raise ValueError(f"variants: needs at least 2 variants, got {len(self.variants)}")
        if not self.salt.strip():
            raise ValueError("salt: must not be empty (it keys the assignment of users to variants)")
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variants: duplicate names {dupes}")
        total = sum(v.share for v in self.variants)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"variants: shares must sum to 1, got {total:.6g} ({dict(zip(names, (v.share for v in self.variants)))})")
        for v in self.variants:
            for key in v.overrides:
                if not key.startswith("recommend.") or key in AB_FIXED:
                    raise ValueError(f"variants[{v.name}].overrides.{key}: only recommend.* keys may differ "
                                     f"between variants{' (not ' + ', '.join(AB_FIXED) + ')' if key in AB_FIXED else ''}")
        return self


# The default search space of genre_tuning (genre_lib/evaluation/tuning.py): what the ranker exposes, with
# ranges wide enough for data unlike the shipped profiles'. cf's weight stays 1 (the blend is scale-free);
# genre's reaches 30, where the mixture form ranks nearly alone (the synthetic profile's 20).
DEFAULT_SPACE = {
    "recommend.weights.genre": {"low": 0.01, "high": 30.0, "log": True},
    "recommend.weights.content": {"low": 0.01, "high": 2.0, "log": True},
    "recommend.weights.popularity": {"low": 0.01, "high": 2.0, "log": True},
    "recommend.cf_reg": {"low": 10.0, "high": 3000.0, "log": True},
    "recommend.cf_dropout": {"low": 0.0, "high": 0.9},
    "recommend.cf_rating_power": {"low": 0.0, "high": 2.0},
    "recommend.genre_scorer": {"choices": ["seed", "share", "popularity", "mixture"]},
    "genres.half_life_days": {"low": 1.0, "high": 365.0, "log": True},
    "genres.rating_weighted": {"choices": [False, True]},
    "genres.shrinkage": {"low": 0.0, "high": 50.0},
}
TUNABLE = ("recommend.", "genres.")


class SpaceSpec(_Section):
    """One tuned key: a range (low, high; log scale; optional step) or a list of choices."""
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = Field(None, gt=0)
    choices: Optional[list[Optional[str | bool | int | float]]] = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> "SpaceSpec":
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either low/high or choices, not both")
            if not self.choices:
                raise ValueError("empty choices")
        elif self.low is None or self.high is None:
            raise ValueError("needs low and high, or choices")
        elif not self.low < self.high:
            raise ValueError(f"empty range [{self.low}, {self.high}]")
        elif self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log scale needs low > 0 and no step")
        return self

    def values(self) -> list:
        """The values that must all be valid for the key: both ends, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


class TuningConfig(_Section):
    """genre_tuning: an Optuna study over `space`, each trial scored on a validation split carved
    from the training split by `protocol`; the test split scored once, for the best trial."""
    sampler: Literal["random", "tpe"] = "tpe"
    n_trials: int = Field(40, ge=1)
    timeout_minutes: Optional[float] = Field(None, gt=0)
    protocol: Optional[Literal["temporal", "stratified"]] = None  # null: eval.protocol
    metric: str = "ndcg@10"
    seed: int = 0
    pruning: bool = True  # median pruning on the first half of the validation users
    storage: Optional[str] = None  # Optuna RDB URL; null: sqlite file tuning/optuna.db in the repo
    study_name: Optional[str] = None  # null: <profile>-<protocol>-<sampler>; the same name resumes
    experiment: str = "genre-tuning"  # MLflow experiment of the study runs
    promote: bool = False  # write the best profile to configs/tuned/<profile>-<date>.yaml
    space: dict[str, SpaceSpec] = Field(default_factory=lambda: {k: SpaceSpec(**v) for k, v in DEFAULT_SPACE.items()})

    @field_validator("metric")
    @classmethod
    def _ranking_metric(cls, v: str) -> str:
        name, _, k = v.partition("@")
        if name not in ("ndcg", "precision", "recall", "map", "hit_rate") or not k.isdigit() or int(k) < 1:
            raise ValueError(f"{v!r}: expected <ndcg|precision|recall|map|hit_rate>@<k>, e.g. ndcg@10")
        return v
