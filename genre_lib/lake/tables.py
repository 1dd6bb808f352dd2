"""The data contract: every table, the stage that writes it, its schema; and every stage, what it
reads and how it runs. The DAG, the jobs, the task docs and the tests derive from these two lists.
Storage and the commit protocol are in storage.py."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import pyarrow as pa

_vec = pa.list_(pa.float32())


@dataclass(frozen=True)
class Table:
    """One table of the contract: its name, the stage that writes it, its schema version and its
    Arrow schema (None for a JSON document such as the evaluation report). `keep_nights`: how many of
    its newest committed nights the maintenance step keeps (genre_lib/lake/retention.py); None: all.
    `history`: kept by the profile's history window instead (`genres.lookback_days` calendar days up
    to the night, what the readers of the history read; all of it while the window is null)."""
    name: str
    stage: str
    version: int
    schema: Optional[pa.Schema]
    keep_nights: Optional[int] = None
    history: bool = False
    min_nights: int = 1  # the fewest nights any retention may keep (a stage that reads its own last night: 2)


SNAPSHOT_NIGHTS = 7   # a table rebuilt whole each night: a week to compare nights and to roll back
RECORD_NIGHTS = 400   # a small per-night record: over a year, for year-on-year comparison


_CHECKS = pa.schema([
        ("night", pa.string()), ("check", pa.string()), ("scope", pa.string()), ("value", pa.float64()),
        ("lower", pa.float64()), ("upper", pa.float64()), ("passed", pa.bool_()), ("severity", pa.string()),
        ("message", pa.string()), ("detail", pa.string()),  # detail: JSON a later night compares with
    ])  # one row per data check of a night (genre_lib/checks/)


def _declare(*tables: Table) -> dict[str, Table]:
    for t in tables:
        if t.keep_nights is not None and t.keep_nights < t.min_nights:  # the newest night always stays
            raise ValueError(f"table {t.name}: keep_nights {t.keep_nights} (None or at least {t.min_nights})")
        if t.history and t.keep_nights is not None:
            raise ValueError(f"table {t.name}: a history table is kept by the window, not keep_nights")
    return {t.name: t for t in tables}


# Every table, in pipeline order, with its writer stage and retention. Ids are strings whatever the
# source. A history table keeps the profile's window (tests/test_retention.py: every table read
# through lake/history.py is one); a snapshot rebuilt each night keeps a week, enough to compare and
# to roll back; small records keep more than a year.
TABLES: dict[str, Table] = _declare(
    Table("interactions_clean", "clean_interactions", 1, pa.schema([
        ("user_id", pa.string()), ("item_id", pa.string()), ("event", pa.string()),
        ("rating", pa.float64()), ("ts", pa.timestamp("us", tz="UTC")),
    ]), history=True),  # read through genre_lib/lake/history.py: the window's days
    Table("interactions_quarantine", "clean_interactions", 1, pa.schema([
        ("user_id", pa.string()), ("item_id", pa.string()), ("event", pa.string()),
        ("rating", pa.string()), ("ts", pa.string()), ("raw", pa.string()),
        ("source_file", pa.string()), ("reason", pa.string()), ("run_id", pa.string()),
    ]), history=True),  # the other half of the clean/quarantine reconciliation: kept as long as the history
    Table("items_clean", "clean_interactions", 1, pa.schema([
        ("item_id", pa.string()), ("title", pa.string()), ("description", pa.string()),
        ("genres", pa.list_(pa.string())), ("tags", pa.string()),
    ]), keep_nights=SNAPSHOT_NIGHTS),
    Table("input_checks", "check_inputs", 1, _CHECKS, keep_nights=RECORD_NIGHTS),
    Table("genre_vocab", "genre_weights", 1, pa.schema([("genre", pa.string()), ("genre_index", pa.int32())]),
          keep_nights=SNAPSHOT_NIGHTS),  # a night extends the one before it (index order)
    Table("user_genre_weights", "genre_weights", 1, pa.schema([
        ("user_id", pa.string()), ("genre", pa.string()), ("count", pa.float64()),
        ("weight", pa.float64()), ("rank", pa.int32()),
    ]), keep_nights=SNAPSHOT_NIGHTS),
    Table("item_genres", "genre_weights", 1, pa.schema([
        ("item_id", pa.string()), ("genre", pa.string()), ("score", pa.float64()),
    ]), keep_nights=SNAPSHOT_NIGHTS),
    Table("item_embeddings", "embed_texts", 1, pa.schema([
        ("item_id", pa.string()), ("text_hash", pa.string()), ("model_id", pa.string()),
        ("dim", pa.int32()), ("vector", _vec),
    ]), keep_nights=SNAPSHOT_NIGHTS, min_nights=2),  # embed_texts' cache is the night before's vectors
    Table("item_genre_scores", "train_classifier", 1, pa.schema([
        ("item_id", pa.string()), ("genre", pa.string()), ("probability", pa.float64()),
        ("source", pa.string()),  # 'labelled' or 'predicted'
    ]), keep_nights=SNAPSHOT_NIGHTS),
    Table("recommendations", "recommend", 3, pa.schema([
        ("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
        ("score", pa.float64()), ("genre_score", pa.float64()), ("content_score", pa.float64()),
        ("cf_score", pa.float64()), ("popularity_score", pa.float64()), ("reason", pa.string()),
        ("genre_r", pa.float64()),  # R(u,i) from the night's user_genre_weights and item_genre_scores
        ("variant", pa.string()),  # the user's A/B variant (genre_lib/ranking/ab.py); null without A/B
    ]), keep_nights=SNAPSHOT_NIGHTS),  # the served night is protected by the caller whatever its age
    Table("output_checks", "check_outputs", 1, _CHECKS, keep_nights=RECORD_NIGHTS),
    Table("evaluation", "evaluate", 1, None, keep_nights=RECORD_NIGHTS),  # metrics.json
    Table("publish_log", "publish", 1, None, keep_nights=RECORD_NIGHTS),  # decision.json: the gate, what went live
)


def schema(table: str) -> pa.Schema:
    s = TABLES[table].schema
    if s is None:
        raise ValueError(f"table {table} is a JSON document, not Parquet")
    return s


def outputs(stage: str) -> list[str]:
    """The tables a stage writes, in declaration order."""
    return [t.name for t in TABLES.values() if t.stage == stage]


@dataclass(frozen=True)
class Stage:
    """One stage of genre_nightly: its name is its job (`jobs/<name>.py`) and its module
    (`genre_lib.stages.<name>`, whose `run(ctx)` does the work); it writes the tables that name it
    as their stage. `runs`: spark (spark-submit in the `spark` pool), torch (Python in the `gpu`
    pool; under Celery on the queue GENRE_TORCH_QUEUE names) or python."""
    name: str
    doc: str
    reads: tuple[str, ...]  # lake tables; its own (an earlier night's) for a stage that carries state over
    runs: str
    timeout_min: int
    other_inputs: str = ""  # what it reads outside the lake, for the task doc

    @property
    def module(self) -> str:
        return f"genre_lib.stages.{self.name}"

    @property
    def pool(self) -> str:
        return {"spark": "spark", "torch": "gpu"}.get(self.runs, "default_pool")

    @property
    def writes(self) -> list[str]:
        return outputs(self.name)

    @property
    def upstream(self) -> list[str]:
        """The stages whose tables it reads, without those reached through another of them."""
        direct = {TABLES[t].stage for t in self.reads} - {self.name}
        below = {s for d in direct for s in _ancestors(d)}
        return [s for s in STAGES if s in direct - below]


def _declare_stages(*stages: Stage) -> dict[str, Stage]:
    out = {s.name: s for s in stages}
    for s in stages:
        if s.runs not in ("spark", "torch", "python"):
            raise ValueError(f"stage {s.name}: runs {s.runs!r}")
        if not outputs(s.name) or not set(s.reads) <= set(TABLES):
            raise ValueError(f"stage {s.name}: writes no table, or reads an undeclared one: {s.reads}")
    if list(out) != list(dict.fromkeys(t.stage for t in TABLES.values())):
        raise ValueError("every stage that writes a table is declared, in the tables' order")
    return out


# Every stage, in pipeline order. The end-to-end test checks the partitions a run really read (its
# MLflow input datasets) against `reads`: a stage that starts reading another table is declared here.
STAGE_SPECS: dict[str, Stage] = _declare_stages(
    Stage("clean_interactions", "raw logs + catalogue -> interactions_clean, interactions_quarantine, items_clean",
          ("interactions_clean",), "spark", 60,  # interactions_clean: only which days are committed (catch-up)
          "raw interaction files and the item catalogue under `data.path` (nights D - `clean.late_days` .. D; "
          "on a new lake every earlier raw day)"),
    Stage("check_inputs", "tonight's clean interactions, quarantine and catalogue against the contract and the "
                          "trailing nights -> input_checks",
          ("interactions_clean", "items_clean", "input_checks"), "python", 20),
    Stage("genre_weights", "interactions_clean history -> user_genre_weights, item_genres, genre_vocab",
          ("interactions_clean", "items_clean", "genre_vocab"), "spark", 60),
    Stage("embed_texts", "items_clean -> item_embeddings, re-embedding only texts not seen before",
          ("items_clean", "item_embeddings"), "torch", 120),
    Stage("train_classifier", "items_clean + item_embeddings -> genre classifier (MLflow registry) -> item_genre_scores",
          ("items_clean", "item_embeddings", "genre_vocab"), "torch", 120,
          "the `genre-classifier` champion in the MLflow model registry"),
    Stage("recommend", "interaction history + catalogue tables -> recommendations (top N per user, explained)",
          ("interactions_clean", "items_clean", "user_genre_weights", "item_genre_scores", "item_genres",
           "item_embeddings"), "spark", 120,
          "with `rerank.retrain_days` > 1, the `genre-reranker` versions in the MLflow model registry"),
    Stage("check_outputs", "tonight's recommendations against the contract and the trailing nights (rows per "
                           "user, coverage, genre-mix drift) -> output_checks",
          ("recommendations", "items_clean", "output_checks"), "python", 20),
    Stage("evaluate", "split the history (eval.protocol), fit on train only, compare the blend with its "
                      "ablations -> evaluation",
          ("interactions_clean", "items_clean", "genre_vocab", "item_genre_scores", "item_genres",
           "item_embeddings", "recommendations", "input_checks", "output_checks", "evaluation"), "spark", 60),
    # recommendations and the check records: for the HTML report (its evaluation: the nights before)
    Stage("publish", "the quality gate (metrics and blocking data checks), then the night into the serving store "
                     "(atomic switch) and a \"recommendations ready\" event -> publish_log",
          ("evaluation", "recommendations", "items_clean", "input_checks", "output_checks"), "python", 30,
          "the serving store's current version (`publish.store`)"),
)
STAGES: list[str] = list(STAGE_SPECS)


def _ancestors(stage: str) -> set[str]:
    direct = {TABLES[t].stage for t in STAGE_SPECS[stage].reads} - {stage}
    return direct | {a for d in direct for a in _ancestors(d)}
