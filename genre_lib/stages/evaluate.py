"""Stage evaluate: split the night's history by `eval.protocol`, fit every scorer on the training
part only, compare the blend with each scorer alone, its ablations and popularity
(evaluation/offline.py); metrics.json in the lake, the same plus charts and a report in MLflow."""
from __future__ import annotations

import pandas as pd

from genre_lib.datasets.source import source_for
from genre_lib.evaluation import cold_eval
from genre_lib.evaluation.offline import evaluate_blocks
from genre_lib.evaluation.results import log_to_mlflow
from genre_lib.evaluation.scratch import Scratch, remote_ranker
from genre_lib.lake.catalogue import Catalogue
from genre_lib.lake.user_blocks import UserBlocks


class _InSourceOrder:
    """Blocks whose rows come in a published split's order (the stratified protocol's draw)."""

    def __init__(self, blocks, source):
        self.blocks, self.source, self.n = blocks, source, blocks.n

    def frame(self, b: int) -> pd.DataFrame:
        return self.source.source_order(self.blocks.frame(b))


def run(ctx) -> dict:
    cfg = ctx.cfg
    blocks = UserBlocks(ctx.lake, ctx.ds, cfg.genres.lookback_days, cfg.recommend.execution.user_block_rows, "evaluate")
    history = _InSourceOrder(blocks, source_for(cfg)) if cfg.eval.protocol == "stratified" else blocks
    catalogue = Catalogue.from_lake(ctx.lake, ctx.ds)
    genres_ds = ctx.lake.latest("item_genres", ctx.ds)
    item_genres = ctx.lake.read_pandas("item_genres", genres_ds) if genres_ds else None
    cold = cfg.eval.protocol == "cold_items"
    rescore = (lambda ids: cold_eval.rescore_hiding_labels(ctx, set(ids))) if cold else None
    remote = remote_ranker(ctx) if cfg.recommend.execution.engine == "spark" else None

    def one_fold(fold: int) -> dict:
        scratch = Scratch(ctx)
        try:
            return evaluate_blocks(history, catalogue, cfg, item_genres=item_genres, spark=ctx.spark, run_date=ctx.run_date,
                                   rescore=rescore, rank_remote=remote, scratch=scratch, cold_fold=fold)
        finally:
            scratch.remove()

    try:
        payload = cold_eval.over_folds(one_fold, cfg.eval.cold_folds if cold else 1)
    finally:
        blocks.remove()
    ctx.lake.write_json("evaluation", ctx.ds, "metrics.json", payload, ctx.manifest())
    return log_to_mlflow(payload)
