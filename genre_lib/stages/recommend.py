"""Stage recommend: fit the ranker (genre_lib/ranking/blend.py) on every interaction up to the night,
the top N of every user, explained, committed as the `recommendations` partition."""
from __future__ import annotations

import numpy as np
import pandas as pd

from genre_lib.lake.catalogue import Catalogue
from genre_lib.lake.user_blocks import UserBlocks
from genre_lib.orchestration import progress
from genre_lib.ranking import ab, rerank, spark_rank
from genre_lib.ranking.blend import recommend, recommendations_frame, score_users
from genre_lib.ranking.model import COMPONENTS, fit_items, fit_users


def run(ctx) -> dict:
    """The stage: fit on every interaction up to the night, top N for every user, explained, each
    user's list ranked with their A/B variant's settings (genre_lib/ranking/ab.py; column `variant`, null
    without A/B); the `recommendations` partition committed; metrics for MLflow. A night past
    `recommend.execution.user_block_rows` interactions is fit and ranked a block of users at a time
    (genre_lib/lake/user_blocks.py): the item side once over every block, then each block's users."""
    cfg = ctx.cfg
    blocks = UserBlocks(ctx.lake, ctx.ds, cfg.genres.lookback_days, cfg.recommend.execution.user_block_rows, "recommend")
    try:
        return _ranked(ctx, blocks)
    finally:
        blocks.remove()


def _ranked(ctx, blocks: UserBlocks) -> dict:
    cfg = ctx.cfg
    catalogue = Catalogue.from_lake(ctx.lake, ctx.ds)
    sides: dict = {}  # ab.fit_key -> item side: one per distinct set of fit-time settings

    def item_side(rc):
        key = ab.fit_key(rc)
        if key not in sides:
            sides[key] = fit_items(blocks.frames, catalogue, rc, cfg.clean.rating_max)
        return sides[key]

    second, extra = None, {}  # None: the blend ranks (off, or auto found no gain on validation)
    if cfg.rerank.enabled != "off":  # trained on the first block's users (all of them on a one-block night)
        second, extra = rerank.night(blocks.frame(0), catalogue, cfg, ctx.run_date)
    totals = {"users": 0, "ab": {}, "used": set()}
    covered = None

    def block_arms():
        for b in range(blocks.n):
            history = blocks.frame(b)
            users = None if blocks.n == 1 else history["user_id"].astype(str).unique()
            weights = ctx.lake.read_pandas("user_genre_weights", ctx.ds, users=users)  # the night's published genre truth
            refit = lambda rc: fit_users(item_side(rc), history, weights, rc, cfg.genres, cfg.clean.rating_max)  # noqa: E731
            model = refit(cfg.recommend)
            totals["users"] += model.n_users
            arms = ab.arms(cfg, model, refit)
            for a in arms:
                if a.name is not None:
                    totals["ab"][a.name] = totals["ab"].get(a.name, 0) + len(a.rows)
            yield history, model, arms
            totals["rows"] = totals.get("rows", 0) + len(history)
            progress.report("user blocks", b + 1, blocks.n, users=totals["users"], interactions=totals["rows"])

    if cfg.recommend.execution.engine == "spark":  # user blocks ranked on the executors, by score_users
        staged = ctx.lake.staging("recommendations", ctx.ds)
        for _, model, arms in block_arms():
            sdf, done = spark_rank.rank(ctx, [(a.name, a.model, a.rc, a.rows) for a in arms], score_users)
            try:
                ctx.lake.spark_write("recommendations", sdf, staged, mode="append")
            finally:
                done()
        man = ctx.lake.commit("recommendations", ctx.ds, staged, {"row_count": ctx.lake.count_rows(staged),
                                                                   **ctx.manifest(users=totals["users"])})
        return {"users": totals["users"], "items": len(item_side(cfg.recommend).item_ids), "rows": man["row_count"]}

    def frames():
        nonlocal covered
        for history, model, arms in block_arms():
            parts = [(a, recommend(a.model, a.rc.weights, a.rc.top_n, a.rc.execution.block_users, users=a.rows) if second is None
                      else second.rank(a.model, history, a.rc, a.rows)) for a in arms if a.rows is None or len(a.rows)]
            if not parts:
                continue
            frame = pd.concat([recommendations_frame(a.model, t, a.rc, a.name) for a, t in parts], ignore_index=True)
            if len(parts) > 1:  # users in model order as without A/B, each list in rank order (stable sort)
                frame = frame.iloc[np.argsort(np.concatenate([t.users for _, t in parts]), kind="stable")]
            covered = np.zeros(model.n_items, bool) if covered is None else covered
            for _, t in parts:
                covered[t.items] = True
                totals["used"] |= {c for c in t.weights}
            yield frame

    man = ctx.lake.write_pandas_parts("recommendations", ctx.ds, frames(), lambda: ctx.manifest(users=totals["users"]))
    n_items = len(item_side(cfg.recommend).item_ids)
    return {"users": totals["users"], "items": n_items, "rows": man["row_count"],
            "catalogue_coverage": float(0 if covered is None else covered.sum()) / max(n_items, 1),
            **{f"scorer_{c}": float(c in totals["used"]) for c in COMPONENTS},
            **{f"ab_users_{name}": n for name, n in totals["ab"].items()}, **extra}
