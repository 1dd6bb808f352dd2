"""Profile sections of the ranker: the blend of scorers (recommend; genre_lib/ranking/model.py and blend.py,
run by genre_lib/stages/recommend.py, evaluate and tuning) and the learned second stage (rerank;
genre_lib/ranking/rerank.py)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from genre_lib.config.base import _Section


class RecommendWeights(_Section):
    """Scorers are standardised per user before blending, so these are relative pulls. cf carries the
    ranking; the others break its ties and cover cold items (tuned on ML-100k, both protocols)."""
    genre: float = Field(0.05, ge=0, description="Weight of the genre scorer (its form: recommend.genre.scorer).")
    content: float = Field(0.05, ge=0, description="Weight of the content scorer: cosine of the item's embedding "
                           "with the user's profile (the weighted mean of their items' embeddings).")
    cf: float = Field(1.0, ge=0, description="Weight of collaborative filtering (EASE/DLAE, or item-kNN above "
                      "recommend.cf.max_items).")
    # hurts on ML-100k once cf is in; kept for other data
    popularity: float = Field(0.0, ge=0, description="Weight of popularity: log(1 + the item's training users).")

    @model_validator(mode="after")
    def _some_weight(self) -> "RecommendWeights":
        """at least one weight must be > 0"""
        if self.genre + self.content + self.cf + self.popularity <= 0:
            raise ValueError("at least one weight must be > 0")
        return self


class GenreScorerConfig(_Section):
    """P(i|u) = sum_c P(c|u) P(i|c) with P(c|u) = w_uc; column genre_r of the recommendations holds the
    seed's R."""
    gamma: float = Field(0.0, ge=0, le=1, description="s(i,c) of an (item, genre) pair that has no score in "
                         "item_genre_scores (an item the classifier did not score).")
    scorer: Literal["seed", "share", "popularity", "mixture"] = Field(
        "seed", description="Form of the genre scorer P(i|u) = sum_c w_uc P(i|c): seed ranks by the seed's R(u,i) "
        "(P(i|c) ~ s(i,c)); share takes P(i|c) uniform within genre c (a big genre does not crowd out a small one); "
        "popularity takes P(i|c) ~ s(i,c) x (the item's training users + 1); mixture fits the user's taste tau_u "
        "and P(i|c) by EM (genre_lib/ranking/mixture.py).")
    mixture_passes: int = Field(10, ge=1, le=100, description="recommend.genre.scorer mixture: EM passes over all "
                                "users fitting P(i|c).")
    mixture_steps: int = Field(5, ge=1, le=100, description="recommend.genre.scorer mixture: EM steps per user "
                               "fitting their taste tau_u.")


class CfConfig(_Section):
    """An item-item autoencoder (EASE family, Steck 2020; tuned on ML-100k), or a sparse item-kNN past
    max_items."""
    reg: float = Field(200.0, gt=0, description="L2 penalty lambda of the item-item autoencoder (EASE/DLAE).")
    dropout: float = Field(0.67, ge=0, lt=1, description="Dropout emphasis p of DLAE: a penalty p/(1-p) x "
                           "item count on each item; 0 is EASE^R.")
    recency_half_life: Optional[float] = Field(
        None, gt=0, description="Items: the cf input x_u weighs the user's k-th newest item 0.5^(k/h) (the model "
        "is still fit on the binary history); pays off when the next items follow the last ones. null: the "
        "binary history.")
    rating_power: float = Field(0.0, ge=0, le=2, description="a > 0: the cf model (its fit and x_u) reads "
                                "(rating / clean.rating_max) ** a per rated item instead of 1 (an event without "
                                "a rating counts 1); 0: binary. Tuned on ML-100k.")
    max_items: int = Field(20_000, ge=1, description="Most items (with interactions) for EASE, which inverts "
                           "an items x items Gram matrix; above it cf is a sparse item-kNN (cosine) over every "
                           "item.")
    knn_neighbours: int = Field(100, ge=1, description="Neighbours kept per item by the item-kNN cf (above "
                                "recommend.cf.max_items).")


class PrivacyConfig(_Section):
    """HMAC-SHA256 pseudonyms in the recommendations and the read API; neither key may differ between A/B
    variants."""
    pseudonymize_users: bool = Field(False, description="Write recommendations under pseudonymous user ids "
                                     "(HMAC-SHA256 keyed by the environment variable pseudonym_key_env); the read "
                                     "API hashes request ids alike. The same for every A/B variant.")
    pseudonym_key_env: str = Field("GENRE_PSEUDONYM_KEY", description="Name of the environment variable that "
                                   "holds the pseudonymisation key (read when pseudonymize_users is on, and by "
                                   "the read API).")


class ExecutionConfig(_Section):
    """The engine, and the blocks of users that bound the ranking's memory."""
    engine: Literal["local", "spark"] = Field(
        "local", description="Where the all-user top-N is ranked: local (on the driver) or spark (user blocks "
        "on the executors, the fitted model shipped to them once as a lake artifact; genre_lib/ranking/"
        "spark_rank.py); spark needs rerank.enabled: off.")
    block_users: int = Field(4096, ge=1, description="Users ranked per matrix product (bounds the ranking's "
                             "memory); with engine spark, the users of one Spark task.")
    user_block_rows: int = Field(2_000_000, ge=1, description="Interactions per user block: a longer history is "
                                 "spread by a hash of the user id into ceil(rows / user_block_rows) blocks that "
                                 "recommend and evaluate fit and rank one at a time (genre_lib/lake/user_blocks.py).")


class RecommendConfig(_Section):
    top_n: int = Field(20, ge=1, le=1000, description="Recommendations per user written to the recommendations "
                       "table and served.")
    weights: RecommendWeights = Field(RecommendWeights(), description="Blend weights of the scorers.")
    genre: GenreScorerConfig = Field(GenreScorerConfig(), description="The genre scorer: its form and the mixture form's fit.")
    cf: CfConfig = Field(CfConfig(), description="Collaborative filtering (cf).")
    privacy: PrivacyConfig = Field(PrivacyConfig(), description="Pseudonymous user ids.")
    execution: ExecutionConfig = Field(ExecutionConfig(), description="Where the ranking runs.")


class RerankConfig(_Section):
    """The learned second stage (genre_lib/ranking/rerank.py): LightGBM lambdarank re-orders the blend's top
    `candidates` items per user. It is trained on a split of the stage's own data by eval.protocol
    (labels: the inner holdout's items; early stopping and the auto decision on a `val_share` slice
    of those users). off: the blend alone, every table as without a re-ranker; on: always re-rank;
    auto: re-rank only if it beats the blend's nDCG@eval.k on that validation slice."""
    enabled: Literal["auto", "on", "off"] = Field(
        "off", description="off: the blend alone; on: always re-rank; auto: re-rank only if the trees beat the "
        "blend's nDCG@eval.k on the validation users.")
    candidates: int = Field(200, ge=2, le=5000, description="The blend's top items per user that the trees "
                            "re-order.")
    num_leaves: int = Field(31, ge=2, description="LightGBM num_leaves (leaves per tree).")
    learning_rate: float = Field(0.05, gt=0, le=1, description="LightGBM learning_rate.")
    n_estimators: int = Field(300, ge=1, description="Most boosting rounds.")
    early_stopping_rounds: int = Field(30, ge=1, description="Stop boosting after this many rounds without a gain "
                                       "of nDCG@eval.k on the validation users.")
    min_child_samples: int = Field(50, ge=1, description="LightGBM min_child_samples (rows per leaf).")
    feature_fraction: float = Field(0.8, gt=0, le=1, description="LightGBM feature_fraction (share of the "
                                    "features each tree sees).")
    val_share: float = Field(0.2, gt=0, lt=1, description="Share of the labelled users (seeded) held out for "
                             "early stopping and the auto decision.")
    max_train_users: Optional[int] = Field(2000, ge=10, description="Cost cap: at most this many labelled users "
                                           "(a seeded sample) train the trees, and this x val_share validate; null: "
                                           "all of them.")
    last_items: int = Field(5, ge=1, description="The user's newest items that the sequence features compare each "
                            "candidate with.")
    ablations: bool = Field(True, description="evaluate: also retrain without each feature group (variants "
                            "rerank-<group>).")
    retrain_days: int = Field(1, ge=1, description="recommend trains the trees at most once per N nights: a night "
                              "reuses the newest genre-reranker version registered for the same config on one of "
                              "the N nights up to it (never a later night's); 1: every night.")
    threads: int = Field(2, ge=1, description="LightGBM threads (training, prediction and the reasons' path "
                         "contributions).")
    seed: int = Field(7, description="Seed of the users' validation split and sample, and of LightGBM.")

    @field_validator("enabled", mode="before")
    @classmethod
    def _yaml_on_off(cls, v):
        """a bare YAML on/off (read as a boolean) is taken as on/off"""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v
