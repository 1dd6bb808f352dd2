"""Stage 2: interactions_clean history -> user_genre_weights, item_genres, genre_vocab."""
import _bootstrap  # noqa: F401

from genre_lib import genres, jobrun


def work(ctx: jobrun.JobContext) -> dict:
    return genres.run(ctx.spark, ctx.cfg, ctx.lake, ctx.run_date, ctx.manifest())


if __name__ == "__main__":
    raise SystemExit(jobrun.main("genre_weights", work))
