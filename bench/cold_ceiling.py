"""How well could any ranker order cold items on the synthetic data? The generator's own hidden state
against the cold_items evaluation of a night.

    python bench/cold_ceiling.py [--config configs/default.yaml] [--run-date 2026-11-22]

Reads the night's evaluation/metrics.json, written by the evaluate stage with `eval.protocol=cold_items`
(and `eval.cold_folds`, e.g. 5), and the night's clean history from the profile's lake; regenerates the
generator's hidden state from the profile's seed (each user's two tastes, each item's true genres and
appeal). For every item fold it splits the history as evaluate does and ranks each test user's cold
items by
  taste+genres         sum_g taste_u(g) [i in g] / |g|: the user's true taste (its mean over the
                       period) and the item's true genres: the best a ranker that sees genres and text
                       can hope for, since nothing else about a cold item is observable;
  taste+genres+appeal  sum_g taste_u(g) [i in g] appeal_i / sum_{j in g} appeal_j: the generator's
                       own draw probability, which needs each item's hidden appeal (its popularity to
                       come, which no text carries);
beside the night's blend, genre and genre-labels from metrics.json, each as nDCG@10 and as a multiple
of the seeded random ranking's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genre_lib.config.settings import load_config  # noqa: E402
from genre_lib.datasets import synthetic  # noqa: E402
from genre_lib.lake.history import read_history_pandas
from genre_lib.lake.storage import Lake  # noqa: E402
from genre_lib.protocol.metrics import ranking_metrics  # noqa: E402
from genre_lib.protocol.splits import cold_item_split, new_items  # noqa: E402


class _Recorder:
    """A numpy Generator that keeps what each method returned (the generator's hidden draws)."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.draws = rng, {}

    def __getattr__(self, name):
        method = getattr(self.rng, name)

        def call(*args, **kwargs):
            out = method(*args, **kwargs)
            self.draws.setdefault(name, []).append(out)
            return out
        return call


def hidden_state(sc) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(items with `_true` genres, users x genres mean taste over the period, appeal per item), drawn
    exactly as synthetic.generate draws them."""
    rng = np.random.default_rng(sc.seed)
    items = synthetic.make_items(sc, rng)
    rec = _Recorder(rng)
    synthetic.make_interactions(sc, items, rec)
    taste0, taste1 = rec.draws["dirichlet"][:2]  # make_interactions' first two draws
    appeal = rec.draws["lognormal"][1]  # after the users' activity
    if len(appeal) != len(items):
        raise SystemExit("the generator's draws changed: update bench/cold_ceiling.py")
    # taste moves linearly by `drift` over the period: its mean is halfway along
    return items, (1 - sc.drift / 2) * taste0 + sc.drift / 2 * taste1, appeal


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    p.add_argument("--run-date", default="2026-11-22")
    args = p.parse_args()
    cfg = load_config(args.config)
    if cfg.data.format != "synthetic":
        raise SystemExit("the ceiling needs the synthetic generator's hidden state: use a synthetic profile")
    lake = Lake(cfg.lake_root)  # a local lake: the bench reads metrics.json as a file
    payload = Lake(cfg.lake_root).read_json("evaluation", args.run_date, "metrics.json")
    if payload["protocol"] != "cold_items":
        raise SystemExit(f"metrics.json of {args.run_date} is a {payload['protocol']} evaluation: run evaluate with "
                         "--set eval.protocol=cold_items --set eval.cold_folds=5 first")
    folds = payload.get("cold_folds", {}).get("per_fold") or [payload]
    items, taste, appeal = hidden_state(cfg.data.synthetic)
    genres = list(synthetic.GENRE_WORDS)
    member = np.array([[g in gs for g in genres] for gs in items["_true"]], float)
    at = pd.Index(items["item_id"])
    history = read_history_pandas(lake, args.run_date, cfg.genres.lookback_days)
    ec, k = cfg.eval, payload["k"]
    rows = []
    for f, fold in enumerate(folds):
        train, held, cold = cold_item_split(history, ec.cold_item_share, ec.seed, f)
        test = new_items(held, train)[["user_id", "item_id"]]
        users = np.asarray(sorted(test["user_id"].unique()), dtype=object)
        u = np.array([int(x[1:]) for x in users])  # generator ids u00042 -> 42
        c = at.get_indexer(cold)
        row = {"fold": f}
        for name, s in (("taste+genres", member[c] / member.sum(0)),
                        ("taste+genres+appeal", member[c] * appeal[c, None] / (member * appeal[:, None]).sum(0))):
            top = np.argsort(-(taste[u] @ s.T), axis=1, kind="stable")[:, :k]
            recs = pd.DataFrame({"user_id": np.repeat(users, k), "item_id": np.asarray(cold)[top.ravel()],
                                 "rank": np.tile(np.arange(1, k + 1), len(users))})
            row[name] = ranking_metrics(test, recs, k)[f"ndcg@{k}"]
        for name in ("blend", "genre", "genre-labels", "random"):
            row[name] = fold["models"][name][f"ndcg@{k}"]
        rows.append(row)
    table = pd.DataFrame(rows).set_index("fold")
    table.loc["mean"] = table.mean()
    cols = ["random", "blend", "genre", "genre-labels", "taste+genres", "taste+genres+appeal"]
    print(f"cold_items nDCG@{k} per item fold (x random in brackets), {args.config} night {args.run_date}")
    print("| fold | " + " | ".join(cols) + " |\n" + "|---" * (len(cols) + 1) + "|")
    for fold, r in table.iterrows():
        print(f"| {fold} | " + " | ".join(f"{r[n]:.4f} ({r[n] / r['random']:.2f}x)" for n in cols) + " |")
    mean = table.loc["mean"]
    print(f"blend / taste+genres ceiling: {mean['blend'] / mean['taste+genres']:.2f}")


if __name__ == "__main__":
    main()
