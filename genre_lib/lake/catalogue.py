"""The catalogue side of the ranker: inputs that do not depend on interactions, read from the
night's committed tables."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd


@dataclass
class Catalogue:
    items: Optional[pd.DataFrame] = None               # items_clean: item_id, title, genres ...
    item_genre_scores: Optional[pd.DataFrame] = None   # item_id, genre, probability
    embeddings: Optional[pd.DataFrame] = None          # item_id, vector

    @classmethod
    def from_lake(cls, lake, ds: str) -> "Catalogue":
        """The latest committed catalogue tables on or before `ds`; a missing one is None (its
        scorer is then unavailable and its weight ignored)."""
        def latest(table, columns=None):
            d = lake.latest(table, ds)
            return lake.read_pandas(table, d, columns) if d else None

        scores = latest("item_genre_scores", ["item_id", "genre", "probability"])
        if scores is None:  # fall back to the labelled genres of the genres stage
            ig = latest("item_genres", ["item_id", "genre", "score"])
            scores = None if ig is None else ig.rename(columns={"score": "probability"})
        return cls(items=latest("items_clean", ["item_id", "title", "genres"]),
                   item_genre_scores=scores,
                   embeddings=latest("item_embeddings", ["item_id", "vector"]))

    def item_ids(self) -> list[str]:
        ids: set[str] = set()
        for df in (self.items, self.item_genre_scores, self.embeddings):
            if df is not None:
                ids.update(df["item_id"].astype(str))
        return sorted(ids)
