"""Profile sections of running the pipeline night after night: the data checks on each night's inputs
and outputs (checks; genre_lib/checks/, the check_inputs and check_outputs stages) and what the
maintenance step keeps (maintenance; genre_lib/orchestration/maintenance.py)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from genre_lib.config.base import _Section

Severity = Literal["blocking", "warning", "off"]

# every check, its scope and what it measures; the severity of each is the profile's (checks.severity)
CHECKS = {
    "schema": "inputs: tonight's interactions_clean, interactions_quarantine and items_clean against the contract "
              "(types, nulls, allowed events, rating range, event times inside the night)",
    "volume": "inputs: rows of tonight's interactions_clean against the trailing nights' median (checks.band)",
    "quarantine_share": "inputs: quarantined / (clean + quarantined) rows of tonight's raw day, at most "
                        "checks.max_quarantine_share",
    "distinct_users": "inputs: distinct users of tonight's interactions against the trailing median (checks.band)",
    "distinct_items": "inputs: distinct items of tonight's interactions against the trailing median (checks.band)",
    "catalogue_size": "inputs: items of tonight's items_clean against the trailing median (checks.band)",
    "genre_coverage": "inputs: distinct genres of tonight's items_clean, at least checks.min_genre_share of the "
                      "trailing median",
    "rows_per_user": "outputs: the fewest recommendations of any user, at least checks.min_rows_per_user "
                     "(and none above recommend.top_n)",
    "user_coverage": "outputs: users with recommendations against the trailing median (checks.band)",
    "item_coverage": "outputs: share of the catalogue recommended to someone, at least checks.min_item_coverage",
    "genre_mix_drift": "outputs: population stability index of tonight's recommended genre mix against the "
                       "trailing nights' mean mix, at most checks.max_mix_psi",
}


class ChecksConfig(_Section):
    """Read by the check_inputs and check_outputs stages and by the publish gate."""
    trailing_nights: int = Field(7, ge=1, description="Earlier nights (their check records) a figure is compared "
                                 "with: the median of those that passed the same check (a run of refused nights "
                                 "does not become the normal), or for the genre mix their mean.")
    min_trailing: int = Field(2, ge=1, description="Fewest earlier nights a trailing comparison needs; with fewer "
                              "(a new lake) it passes and says so.")
    band: tuple[float, float] = Field((0.5, 2.0), description="Allowed ratio [low, high] of a counted figure to its "
                                      "trailing median (volume, distinct users and items, catalogue, genres, users "
                                      "with recommendations).")
    min_genre_share: float = Field(0.9, ge=0, le=1, description="Smallest ratio of tonight's distinct catalogue "
                                   "genres to their trailing median (a catalogue losing genres starves the ranker).")
    max_quarantine_share: float = Field(0.2, ge=0, le=1, description="Largest share of tonight's raw rows the "
                                        "clean stage may quarantine.")
    min_rows_per_user: int = Field(1, ge=1, description="Fewest recommendations any user with recommendations gets.")
    min_item_coverage: float = Field(0.01, ge=0, le=1, description="Smallest share of the catalogue recommended to "
                                     "at least one user.")
    max_mix_psi: float = Field(0.25, ge=0, description="Largest population stability index of the recommended "
                               "genre mix against the trailing mean (0.1: a small shift, 0.25: a large one).")
    severity: dict[str, Severity] = Field(
        {"schema": "blocking", "volume": "blocking", "quarantine_share": "warning", "distinct_users": "warning",
         "distinct_items": "warning", "catalogue_size": "blocking", "genre_coverage": "blocking",
         "rows_per_user": "blocking", "user_coverage": "warning", "item_coverage": "warning",
         "genre_mix_drift": "warning"},
        description="Per check: blocking (the night is not published, the served night stays, one alert), warning "
                    "(one alert, the night goes on) or off. Checks: " + ", ".join(CHECKS) + ".")

    @field_validator("band")
    @classmethod
    def _band(cls, v):
        """band: 0 <= low <= 1 <= high"""
        if not 0 <= v[0] <= 1 <= v[1]:
            raise ValueError(f"[low, high] with 0 <= low <= 1 <= high, got {list(v)}")
        return v

    @field_validator("severity")
    @classmethod
    def _known(cls, v):
        """severity: only known checks; a check not named is a warning"""
        unknown = sorted(set(v) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {sorted(CHECKS)}")
        return {**{c: "warning" for c in CHECKS}, **v}


class MaintenanceConfig(_Section):
    """Read by the maintenance task after each night (genre_lib/orchestration/maintenance.py)."""

    enabled: bool = Field(True, description="Run the maintenance task after the night.")
    dry_run: bool = Field(False, description="List (in the task log and the MLflow parent run) what would be "
                          "removed, remove nothing.")
    mlflow_keep_days: Optional[int] = Field(90, ge=1, description="MLflow runs of the pipeline's experiments whose "
                                            "night (tag run_date; else their start) is more than this many days "
                                            "before tonight are deleted and garbage-collected with their artifacts, "
                                            "except runs behind a kept model version and the trends run; null keeps "
                                            "all. (The trends run and the lake's records keep the figures longer.)")
    registry_keep: Optional[int] = Field(10, ge=1, description="Newest versions kept of each registered model "
                                         "(classifier, re-ranker trees); the version holding the champion alias "
                                         "always stays; null keeps all.")
    keep_nights: dict[str, int] = Field({}, description="Per table, nights kept instead of the contract's "
                                        "keep_nights (genre_lib/lake/tables.py), e.g. a short soak's {recommendations: "
                                        "3}; at least the table's min_nights (item_embeddings 2: its cache); a history table follows "
                                        "genres.lookback_days instead (checked before the run starts).")
    airflow_keep_days: Optional[float] = Field(90, gt=0, description="`airflow db clean` removes metadata (runs, task "
                                               "instances, logs, XCom) older than this many days (wall-clock); null "
                                               "skips it.")
