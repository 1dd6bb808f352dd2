"""Profile sections of the data side: where the lake is (lake), where the raw data comes from (data,
data.synthetic), what the clean stage keeps (clean) and how the genres stage weighs a user's history
(genres). The stages that read them: genre_lib/datasets/, genre_lib/stages/clean_interactions.py and
genre_lib/stages/genre_weights.py."""
from __future__ import annotations

import datetime as dt
from typing import Literal, Optional

from pydantic import Field, field_validator

from genre_lib.config.base import _Section


class LakeConfig(_Section):
    root: str = Field(
        "lake", description="Root of the table lake: a local folder (a relative path is relative to the project "
        "root) or a filesystem URI such as s3a://bucket/lake. Tables live at <root>/<table>/ds=YYYY-MM-DD/.")
    scratch_root: Optional[str] = Field(
        None, description="Where evaluate hands its ranked rows to Spark as Parquet (_artifacts/evaluate/...); "
        "empty: the lake root. A local folder where the lake is on an object store that this Spark cannot "
        "read (no hadoop-aws), e.g. a local master beside an s3:// lake.")

    @field_validator("root")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        """must not be empty"""
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class SyntheticConfig(_Section):
    """The seeded generator (genre_lib/datasets/synthetic.py) that `python -m genre_lib.datasets` (make data)
    runs into data.path when data.format is synthetic."""
    users: int = Field(400, ge=1, description="Number of users (ids u00000, u00001, ...).")
    items: int = Field(600, ge=1, description="Number of catalogue items (ids i000000, ...); about 5% are written "
                       "without genres, for the classifier to predict.")
    interactions: int = Field(30_000, ge=0, description="Number of valid interaction events over all days (the "
                              "dirty rows and the bot of dirty_share come on top).")
    days: int = Field(30, ge=1, description="Days of history ending on end_date: one raw folder "
                      "interactions/ds=YYYY-MM-DD per day.")
    end_date: dt.date = Field(dt.date(2026, 11, 22), description="Last day of the generated history (YYYY-MM-DD).")
    dirty_share: float = Field(0.02, ge=0, le=0.5, description="Share of each day's rows added again as bad "
                               "lines (malformed, missing id, bad or future timestamp, bad rating, unknown event or "
                               "item, exact and near duplicates), plus a bot user on end_date; jsonl files only. 0: "
                               "clean files.")
    drift: float = Field(0.3, ge=0, le=1, description="How far each user's genre taste moves over the days, "
                         "linearly from a first random taste towards a second one (0: not at all, 1: all the way).")
    seed: int = Field(42, description="Seed of the generator: the same settings and seed write the same files.")
    file_format: Literal["jsonl", "csv", "parquet"] = Field(
        "jsonl", description="Format of the daily interaction files (events.jsonl, events.csv or events.parquet); "
        "the catalogue is always items.jsonl.")


class DataConfig(_Section):
    format: Literal["synthetic", "movielens-100k", "movielens-csv", "raw"] = Field(
        "synthetic", description="How data.path is read: synthetic (the generator's files, written by make data), "
        "raw (your own export: items.parquet|jsonl|csv and interactions/[ds=YYYY-MM-DD/] files), movielens-100k "
        "(u.data, u.item) or movielens-csv (ratings.csv, movies.csv, tags.csv); both MovieLens formats are one "
        "snapshot that belongs to the run date.")
    path: str = Field("data/synthetic", description="Folder of the raw data (a relative path is relative to the "
                      "project root).")
    synthetic: SyntheticConfig = Field(SyntheticConfig(), description="The synthetic data set (data.format: "
                                       "synthetic).")


class CleanConfig(_Section):
    """genre_lib/stages/clean_interactions.py: each raw row is kept, quarantined with a reason, or dropped as a
    duplicate."""
    min_ts: dt.datetime = Field(dt.datetime(1995, 1, 1), description="Earliest accepted event time (UTC); an "
                                "older row is quarantined as too_old_timestamp.")
    max_events_per_user_day: int = Field(500, ge=1, description="A user with more valid events than this on one "
                                         "calendar day is taken for a bot: that day's events are quarantined "
                                         "(bot_user).")
    dedupe_window_s: int = Field(60, ge=0, description="Seconds: a repeat of the same user, item and event within "
                                 "this long after the previous one is a duplicate and dropped (0: same time only).")
    late_days: int = Field(2, ge=0, description="Days of late data: night D also re-reads the raw day folders "
                           "D - late_days .. D-1 (raw and synthetic sources).")
    rating_min: float = Field(0.5, description="Lowest valid rating; a rating below it is quarantined "
                              "(rating_out_of_range).")
    rating_max: float = Field(5.0, description="Highest valid rating (quarantined above it), and the top of the "
                              "scale the ranker divides ratings by (content profile, recommend.cf.rating_power).")
    events: list[str] = Field(["view", "click", "rate", "purchase"], description="Accepted event types (compared "
                              "lower-cased and trimmed); any other event is quarantined as unknown_event.")
    catch_up: bool = Field(True, description="Also clean every earlier raw day folder that has no committed "
                           "interactions_clean partition yet, inside the history window genres.lookback_days (a "
                           "first run on an empty lake cleans the window; a day retention removed is not cleaned "
                           "again).")


class GenresConfig(_Section):
    """genre_lib/stages/genre_weights.py: w_uc = f(u,c) / sum_k f(u,k), f(u,c) the sum of value(i) x s(i,c)
    over the user's interactions."""
    lookback_days: Optional[int] = Field(None, ge=1, description="Days of history read up to the run date by the "
                                         "genres, recommend and evaluate stages and by tuning, and what the "
                                         "maintenance task keeps of the history tables; null: every committed day "
                                         "(and a night's cost grows with the nights before it). Every shipped "
                                         "profile sets it, chosen by bench/history_window.py.")
    multi_genre: Literal["split", "full"] = Field(
        "split", description="How an item with n genres counts towards each of them: split 1/n (s(i,c) = 1/n), "
        "full 1 (s(i,c) = 1).")
    rating_weighted: bool = Field(False, description="true: value(i) is the rating, else the event's weight "
                                  "(event_weights), else 1; false: every interaction counts 1.")
    event_weights: dict[str, float] = Field(
        {"view": 1.0, "click": 1.0, "rate": 1.0, "purchase": 2.0}, description="Weight of each event type "
        "(an event missing here counts 1): the genre weights use it when rating_weighted, the ranker's content "
        "profile always.")
    half_life_days: Optional[float] = Field(None, gt=0, description="Days: an interaction's weight halves with "
                                            "each half_life_days of age at the end of the run date, in the genre "
                                            "weights and the content profile; null: no decay.")
    shrinkage: float = Field(0.0, ge=0, description="Pseudo-count m smoothing each user's weights towards the "
                             "global genre mix p_c: (f(u,c) + m p_c) / (sum_k f(u,k) + m); 0: none.")
    min_interactions: int = Field(1, ge=1, description="A user with fewer interactions in the window gets no "
                                  "genre weights.")

    @field_validator("event_weights")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        """every weight >= 0"""
        bad = [k for k, w in v.items() if w < 0]
        if bad:
            raise ValueError(f"weights must be >= 0, negative for {bad}")
        return v
