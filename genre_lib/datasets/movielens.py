"""MovieLens loaders that give the raw form: interactions (user_id, item_id, event, rating, ts) and
the catalogue (item_id, title, description, genres, tags). Files are read in place, never copied."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"data.path: {path} not found")
    return path


def load_100k_items(path: str | Path) -> pd.DataFrame:
    cols = ["item_id", "title", "release", "video", "url", *ML100K_GENRES]
    raw = pd.read_csv(require(Path(path) / "u.item"), sep="|", names=cols, encoding="latin-1", dtype=str)
    flags = raw[ML100K_GENRES].astype(int).to_numpy().astype(bool)
    genres = [[g for g, f in zip(ML100K_GENRES, row) if f and g != "unknown"] for row in flags]
    return pd.DataFrame({"item_id": raw["item_id"], "title": raw["title"].fillna(""), "description": None,
                         "genres": genres, "tags": None})


def in_source_order(df: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """`df` (ML-100k interactions from the lake) in u.data's row order. The lake keeps no row order,
    but Recommenders' stratified split draws one random number per row in file order: this is what
    makes the nightly `stratified` evaluation the published split. Rows not in u.data go last."""
    src = pd.read_csv(require(Path(path) / "u.data"), sep="\t", names=["user_id", "item_id", "rating", "ts"],
                      usecols=["user_id", "item_id"], dtype=str)
    pos = pd.Series(range(len(src)), index=pd.MultiIndex.from_frame(src)).groupby(level=[0, 1]).first()
    key = pd.MultiIndex.from_frame(df[["user_id", "item_id"]].astype(str))
    order = pos.reindex(key).to_numpy()
    order = pd.Series(order).fillna(len(src) + pd.Series(range(len(df))).astype(float)).to_numpy()
    return df.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def load_csv_items(path: str | Path) -> pd.DataFrame:
    """ml-latest-small / ML-20M / ML-25M: movies.csv (movieId,title,genres) and tags.csv."""
    movies = pd.read_csv(require(Path(path) / "movies.csv"), dtype=str)
    tags_path = Path(path) / "tags.csv"
    tags = None
    if tags_path.exists():
        t = pd.read_csv(tags_path, dtype=str, usecols=["movieId", "tag"]).dropna()
        tags = t.groupby("movieId")["tag"].agg(lambda s: ",".join(sorted(set(s))[:20]))
    genres = movies["genres"].fillna("").map(
        lambda g: [] if g in ("", "(no genres listed)") else g.split("|"))
    return pd.DataFrame({"item_id": movies["movieId"], "title": movies["title"].fillna(""), "description": None,
                         "genres": genres,
                         "tags": movies["movieId"].map(tags) if tags is not None else None})


def interactions_csv_path(path: str | Path) -> Path:
    return require(Path(path) / "ratings.csv")
