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
    protocol: Literal["temporal", "stratified", "cold_items"] = Field(
        "temporal", description="temporal: each user's last holdout_share of interactions by time held out; "
        "stratified: Microsoft Recommenders' split, 75% of each item's interactions train (seeded; ML-100k's "
        "published tables); cold_items: items held out with all their interactions (cold_item_share, cold_folds), "
        "the classifier rescored without their labels.")
    k: int = Field(10, ge=1, description="Cut-off of the ranking metrics (precision, recall, nDCG, MAP, hit rate "
                   "@k) and of the re-ranker's nDCG.")
    holdout_share: float = Field(0.2, gt=0, lt=1, description="protocol temporal (also the re-ranker's and "
                                 "tuning's inner splits): share of each user's newest interactions held out, rounded "
                                 "half up per user.")
    cold_item_share: float = Field(0.2, gt=0, lt=1, description="protocol cold_items: share of the items (a seeded "
                                   "hash of the id) held out in each fold.")
    cold_folds: int = Field(1, ge=1, description="protocol cold_items: disjoint item folds evaluated in turn, the "
                            "metrics their mean.")
    seed: int = Field(42, description="Seed of the stratified and cold-item splits (also the re-ranker's and "
                      "tuning's inner splits), the A/B bootstrap intervals and the user folds.")
    # N > 1: users in N seeded folds, each fold's users tested on their holdout while everyone else's history trains
    folds: int = Field(1, ge=1, description="N > 1: user-level N-fold cross-validation of the A/B variants "
                       "(genre_lib/evaluation/ab_eval.py); needs ab.variants and protocol temporal or stratified.")

    @model_validator(mode="after")
    def _folds_split_users(self) -> "EvalConfig":
        """folds > 1 needs protocol temporal or stratified; cold_folds x cold_item_share must be at most 1"""
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
AB_FIXED = ("recommend.privacy.pseudonymize_users", "recommend.privacy.pseudonym_key_env")


class AbVariant(_Section):
    name: str = Field(pattern=AB_NAME, description="Variant name (letters, digits, _ and -; up to 64): the "
                      "recommendations' variant column and the MLflow metric keys ab.<name>.*.")
    share: float = Field(gt=0, le=1, description="Share of the users assigned to this variant.")
    overrides: dict[str, Any] = Field({}, description="Dotted recommend.* key -> value, applied like --set key=value "
                                      "for this variant's users (not recommend.privacy.pseudonymize_users or "
                                      "recommend.privacy.pseudonym_key_env).")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        """not difference or diff (reserved for the difference between the first two variants)"""
        if v in ("difference", "diff"):
            raise ValueError(f"{v!r} is reserved (the difference between the first two variants)")
        return v


class AbConfig(_Section):
    """A/B variants of the ranker (genre_lib/ranking/ab.py): no variants = A/B off. Users are assigned by
    HMAC-SHA256(salt, user id), so a user keeps their variant until the salt changes."""
    salt: str = Field("", description="Key of the HMAC-SHA256 that assigns users to variants; a user keeps their "
                      "variant until it changes, a new salt re-draws everyone.")
    variants: list[AbVariant] = Field([], description="The variants in order: a user gets the first whose "
                                      "cumulative share exceeds their hash. None: A/B off.")

    @model_validator(mode="after")
    def _well_formed(self) -> "AbConfig":
        """with any variant or salt: at least 2 variants, a non-empty salt, distinct names, shares summing to 1,
        and overrides of recommend.* keys only"""
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
                fixed = any(f == key or f.startswith(key + ".") for f in AB_FIXED)  # or their section
                if not key.startswith("recommend.") or fixed:
                    raise ValueError(f"variants[{v.name}].overrides.{key}: only recommend.* keys may differ "
                                     f"between variants{' (not ' + ', '.join(AB_FIXED) + ')' if fixed else ''}")
        return self


# The default search space of genre_tuning (genre_lib/evaluation/tuning.py): what the ranker exposes, with
# ranges wide enough for data unlike the shipped profiles'. cf's weight stays 1 (the blend is scale-free);
# genre's reaches 30, where the mixture form ranks nearly alone (the synthetic profile's 20).
DEFAULT_SPACE = {
    "recommend.weights.genre": {"low": 0.01, "high": 30.0, "log": True},
    "recommend.weights.content": {"low": 0.01, "high": 2.0, "log": True},
    "recommend.weights.popularity": {"low": 0.01, "high": 2.0, "log": True},
    "recommend.cf.reg": {"low": 10.0, "high": 3000.0, "log": True},
    "recommend.cf.dropout": {"low": 0.0, "high": 0.9},
    "recommend.cf.rating_power": {"low": 0.0, "high": 2.0},
    "recommend.genre.scorer": {"choices": ["seed", "share", "popularity", "mixture"]},
    "genres.half_life_days": {"low": 1.0, "high": 365.0, "log": True},
    "genres.rating_weighted": {"choices": [False, True]},
    "genres.shrinkage": {"low": 0.0, "high": 50.0},
}
TUNABLE = ("recommend.", "genres.")


class SpaceSpec(_Section):
    """One tuned key: a range (low, high; log scale; optional step) or a list of choices."""
    low: Optional[float] = Field(None, description="Low end of the range (with high).")
    high: Optional[float] = Field(None, description="High end of the range (with low).")
    log: bool = Field(False, description="Sample the range on a log scale (needs low > 0 and no step).")
    step: Optional[float] = Field(None, gt=0, description="Step of a discrete range; null: continuous.")
    choices: Optional[list[Optional[str | bool | int | float]]] = Field(
        None, description="The values to choose from, instead of a range.")

    @model_validator(mode="after")
    def _range_or_choices(self) -> "SpaceSpec":
        """either low < high (log scale: low > 0, no step) or a non-empty list of choices"""
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
    sampler: Literal["random", "tpe"] = Field("tpe", description="Optuna sampler: tpe (TPESampler) or random "
                                              "(RandomSampler).")
    n_trials: int = Field(40, ge=1, description="Trials of the study in all; a resumed study runs the missing ones.")
    timeout_minutes: Optional[float] = Field(None, gt=0, description="Minutes after which no new trial starts; "
                                             "null: no limit.")
    protocol: Optional[Literal["temporal", "stratified"]] = Field(
        None, description="Split of the night's history into train/test and of train into inner-train/validation; "
        "null: eval.protocol (which must then not be cold_items).")
    metric: str = Field("ndcg@10", description="What the study maximises on validation: "
                        "<ndcg|precision|recall|map|hit_rate>@<k>.")
    seed: int = Field(0, description="Seed of the sampler (plus the trials already run, on resume) and of the "
                      "pruning half of the validation users.")
    pruning: bool = Field(True, description="Median pruning: score a trial on a seeded half of the validation users "
                          "first and stop it there when below the median of earlier trials.")
    storage: Optional[str] = Field(None, description="Optuna RDB storage URL; null: the environment's "
                                   "GENRE_TUNING_STORAGE, else the SQLite file tuning/optuna.db in the repo.")
    study_name: Optional[str] = Field(None, description="Study name; the same name resumes the study. null: "
                                      "<profile>-<protocol>-<sampler>.")
    experiment: str = Field("genre-tuning", description="MLflow experiment of the study runs (a parent run per "
                            "study, a nested run per trial).")
    promote: bool = Field(False, description="Write the best profile to configs/tuned/<profile>-<date>.yaml.")
    space: dict[str, SpaceSpec] = Field(default_factory=lambda: {k: SpaceSpec(**v) for k, v in DEFAULT_SPACE.items()},
                                        description="Dotted recommend.* or genres.* key -> its range or choices; "
                                        "each end and choice must be a valid value of that key.")

    @field_validator("metric")
    @classmethod
    def _ranking_metric(cls, v: str) -> str:
        """<ndcg|precision|recall|map|hit_rate>@<k>, k >= 1"""
        name, _, k = v.partition("@")
        if name not in ("ndcg", "precision", "recall", "map", "hit_rate") or not k.isdigit() or int(k) < 1:
            raise ValueError(f"{v!r}: expected <ndcg|precision|recall|map|hit_rate>@<k>, e.g. ndcg@10")
        return v
