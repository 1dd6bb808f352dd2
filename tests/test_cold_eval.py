"""The cold_items protocol over item folds (genre_lib/evaluation/cold_eval.py)."""
import numpy as np
import pandas as pd
import pytest

from genre_lib.config.settings import ConfigError, load_config
from genre_lib.evaluation import cold_eval
from genre_lib.evaluation.offline import evaluate
from genre_lib.lake.catalogue import Catalogue
from genre_lib.protocol.splits import cold_item_split, cold_items
from tests.test_recommend import GENRES, tiny_data


def test_item_folds_hold_each_item_once_and_fold_0_is_the_single_draw():
    ids = [f"i{i}" for i in range(500)]
    folds = [set(cold_items(ids, 0.25, 42, f)) for f in range(4)]
    assert set().union(*folds) == set(ids) and sum(map(len, folds)) == len(ids)
    assert all(80 <= len(f) <= 170 for f in folds)  # a seeded hash, about a quarter each
    assert folds[0] == set(cold_items(ids, 0.25, 42)) != set(cold_items(ids, 0.25, 43))
    inter = pd.DataFrame({"user_id": ["u1", "u2"] * 250, "item_id": ids})
    train, test, cold = cold_item_split(inter, 0.25, 42, fold=2)
    assert set(cold) == folds[2] and set(test.item_id) == folds[2] and not set(train.item_id) & folds[2]


def test_folds_evaluated_in_turn_and_averaged():
    inter, items, scores, emb = tiny_data(n_users=40, n=900)
    cfg = load_config(None, ["eval.protocol=cold_items", "eval.cold_item_share=0.25", "eval.cold_folds=4", "eval.k=5",
                             "recommend.weights.genre=1", "recommend.weights.content=0.5"])
    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]], embeddings=emb)
    asked = []

    def rescore(cold_ids):  # the labels hidden as a classifier that learnt nothing would score them
        asked.append(set(cold_ids))
        hidden = scores["item_id"].isin(set(cold_ids))
        flat = pd.DataFrame({"item_id": np.repeat(sorted(set(cold_ids)), len(GENRES)),
                             "genre": GENRES * len(set(cold_ids)), "probability": 1 / len(GENRES)})
        return pd.concat([scores[~hidden][["item_id", "genre", "probability"]], flat], ignore_index=True)

    folds = [evaluate(inter, cat, cfg, rescore=rescore, cold_fold=f) for f in range(4)]
    asked.clear()
    payload = cold_eval.over_folds(lambda f: evaluate(inter, cat, cfg, rescore=rescore, cold_fold=f), cfg.eval.cold_folds)
    # each fold's classifier hid that fold's items, and every item was cold once
    assert asked == [set(cold_items(inter.item_id.unique(), 0.25, cfg.eval.seed, f)) for f in range(4)]
    assert payload["cold_items"] == inter["item_id"].nunique() == sum(p["cold_items"] for p in folds)
    assert payload["test_rows"] == sum(p["test_rows"] for p in folds)
    assert len({round(p["models"]["blend"]["ndcg@5"], 9) for p in folds}) > 1  # the folds differ
    for name, metrics in payload["models"].items():
        for key, value in metrics.items():
            per = [p["models"][name][key] for p in folds]
            assert value == pytest.approx(np.mean(per), abs=1e-12)
            assert payload["cold_folds"]["std"][name][key] == pytest.approx(np.std(per, ddof=1), abs=1e-12)
    assert payload["cold_folds"]["n"] == 4
    assert [f["models"] for f in payload["cold_folds"]["per_fold"]] == [p["models"] for p in folds]
    assert payload["variants"] == folds[0]["variants"]
    # one fold: fold 0's payload unchanged
    assert cold_eval.over_folds(lambda f: folds[f], 1) is folds[0]


def test_folds_must_fit_in_the_catalogue():
    with pytest.raises(ConfigError, match="cold_folds x cold_item_share"):
        load_config(None, ["eval.protocol=cold_items", "eval.cold_item_share=0.25", "eval.cold_folds=5"])
    load_config(None, ["eval.protocol=cold_items", "eval.cold_item_share=0.2", "eval.cold_folds=5"])
