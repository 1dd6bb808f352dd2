"""One `Source` per `data.format`: where its raw files are, which of them a night cleans, its
catalogue, and the row order its published splits assume. Every other module asks the source
instead of branching on the format.

    synthetic        `raw` layout, written by the seeded generator (`prepare`)
    raw              <data.path>/interactions/[ds=YYYY-MM-DD/]*.jsonl|csv|parquet + items.csv|jsonl|parquet
    movielens-100k   u.data / u.item, read in place (one snapshot: all history belongs to the run date)
    movielens-csv    ratings.csv / movies.csv / tags.csv of ml-latest-small, ML-20M, ML-25M (snapshot)
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from genre_lib.config.settings import ConfigError, PipelineConfig
from genre_lib.datasets import movielens

DAY = re.compile(r"ds=(\d{4}-\d{2}-\d{2})")
_EXT = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".tsv": "tsv"}


class SchemaDriftError(ValueError):
    """A whole raw file has the wrong columns (or an unknown format)."""


@dataclass
class RawFiles:
    """The raw files one clean run reads, grouped by kind (jsonl, csv, tsv, parquet, ml100k,
    mlcsv), and the days they cover."""
    days: list[str]
    files: dict[str, list[str]] = field(default_factory=dict)
    snapshot: bool = False  # one file holds all history: it all belongs to the run date
    missing_days: list[str] = field(default_factory=list)


class Source:
    format = ""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.path = Path(cfg.data_path)

    def check(self) -> None:
        """The input folder must exist before a run starts (synthetic data: `make data` writes it)."""
        if "://" not in self.cfg.data.path and not self.path.exists():
            raise ConfigError(f"data.path: {self.path} not found")

    def raw_files(self, run_date: dt.date, committed: list[str]) -> RawFiles:
        raise NotImplementedError

    def items(self) -> pd.DataFrame:
        """The catalogue as the source has it: item_id, title[, description, genres, tags]."""
        raise NotImplementedError

    def source_order(self, interactions: pd.DataFrame) -> pd.DataFrame:
        """The interactions in the order a published split of this data set draws its random
        numbers in; the lake keeps no row order, so by default the frame as given."""
        return interactions

    def prepare(self, force: bool = False) -> str:
        """Write the raw data where the source generates it; a message saying what happened."""
        return f"data.format is {self.format}: nothing to generate"


class RawSource(Source):
    """Your own export, one folder per day (or one flat folder of files for tonight)."""
    format = "raw"

    def raw_files(self, run_date: dt.date, committed: list[str]) -> RawFiles:
        """The late window [D - late_days, D], plus with `clean.catch_up` every earlier raw day that
        has no committed clean partition yet, inside the history window (genres.lookback_days): a
        day retention removed is not cleaned again."""
        inter, ds = self.path / "interactions", run_date.isoformat()
        day_dirs = {m.group(1): d for d in inter.glob("ds=*") if (m := DAY.fullmatch(d.name))} if inter.exists() else {}
        if not day_dirs:  # a flat export: every file is tonight's
            files = _by_kind(_data_files(inter)) if inter.exists() else {}
            return RawFiles([ds], files, snapshot=True)
        window = {(run_date - dt.timedelta(days=k)).isoformat() for k in range(self.cfg.clean.late_days + 1)}
        wanted = {d for d in day_dirs if d in window}
        if self.cfg.clean.catch_up:
            w = self.cfg.genres.lookback_days
            first = (run_date - dt.timedelta(days=w - 1)).isoformat() if w else ""
            wanted |= {d for d in day_dirs if first <= d < ds and d not in committed}
        wanted.add(ds)
        files: list[Path] = []
        for d in sorted(wanted):
            if d in day_dirs:
                files += _data_files(day_dirs[d])
        return RawFiles(sorted(wanted), _by_kind(files), missing_days=[] if ds in day_dirs else [ds])

    def items(self) -> pd.DataFrame:
        for name, reader in (("items.parquet", pd.read_parquet),
                             ("items.jsonl", lambda p: pd.read_json(p, lines=True, dtype=False)),
                             ("items.csv", lambda p: pd.read_csv(p, dtype=str))):
            if (self.path / name).exists():
                return reader(self.path / name)
        raise FileNotFoundError(f"data.path: no items.parquet, items.jsonl or items.csv in {self.path}")


class SyntheticSource(RawSource):
    format = "synthetic"

    def prepare(self, force: bool = False) -> str:
        from genre_lib.datasets import synthetic

        if (self.path / "items.jsonl").exists() and not force:
            return f"synthetic data already at {self.path}"
        if self.path.exists():
            shutil.rmtree(self.path)
        return f"generating synthetic data at {self.path}: {synthetic.generate(self.cfg.data.synthetic, self.path)}"


class MovieLens100kSource(Source):
    format = "movielens-100k"

    def raw_files(self, run_date: dt.date, committed: list[str]) -> RawFiles:
        return RawFiles([run_date.isoformat()], {"ml100k": [str(movielens.require(self.path / "u.data"))]}, snapshot=True)

    def items(self) -> pd.DataFrame:
        return movielens.load_100k_items(self.path)

    def source_order(self, interactions: pd.DataFrame) -> pd.DataFrame:
        # Recommenders' stratified split draws one random number per row in u.data's order
        return movielens.in_source_order(interactions, self.path)


class MovieLensCsvSource(Source):
    format = "movielens-csv"

    def raw_files(self, run_date: dt.date, committed: list[str]) -> RawFiles:
        return RawFiles([run_date.isoformat()], {"mlcsv": [str(movielens.interactions_csv_path(self.path))]}, snapshot=True)

    def items(self) -> pd.DataFrame:
        return movielens.load_csv_items(self.path)


SOURCES = {s.format: s for s in (SyntheticSource, RawSource, MovieLens100kSource, MovieLensCsvSource)}


def source_for(cfg: PipelineConfig) -> Source:
    return SOURCES[cfg.data.format](cfg)


def _data_files(folder: Path) -> list[Path]:
    """Files under `folder`, less the ones tools leave beside data (`.DS_Store`, `_SUCCESS`,
    `_temporary/`): a name, or a folder on the way to it, starting with `.` or `_` is not data."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts))


def _by_kind(files: list[Path]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in files:
        kind = _EXT.get(p.suffix.lower())
        if kind is None:
            raise SchemaDriftError(f"raw file {p}: unknown format (expected .jsonl, .csv or .parquet)")
        out.setdefault(kind, []).append(str(p))
    return out
