"""Stage 5: interaction history + catalogue tables -> recommendations (top N per user, explained)."""
import _bootstrap  # noqa: F401

from genre_lib import jobrun
from genre_lib.tables import read_history_pandas


def work(ctx: jobrun.JobContext) -> dict:
    from genre_lib import recommend  # imports torch: only once the arguments are valid

    history = read_history_pandas(ctx.lake, ctx.ds, ctx.cfg.genres.lookback_days)
    catalogue = recommend.Catalogue.from_lake(ctx.lake, ctx.ds)
    table, metrics = recommend.run(history, catalogue, ctx.cfg)
    ctx.lake.write_pandas("recommendations", ctx.ds, table, ctx.manifest(users=metrics["users"]))
    return metrics


if __name__ == "__main__":
    raise SystemExit(jobrun.main("recommend", work))
