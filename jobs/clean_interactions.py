"""Stage 1: raw logs + catalogue -> interactions_clean, interactions_quarantine, items_clean."""
import _bootstrap  # noqa: F401

from genre_lib import clean, jobrun
from genre_lib.pipeline import check_source


def work(ctx: jobrun.JobContext) -> dict:
    return clean.run(ctx.spark, ctx.cfg, ctx.lake, ctx.run_date, ctx.manifest())


def main(argv=None) -> int:
    return jobrun.main("clean_interactions", work, argv, preflight=check_source)


if __name__ == "__main__":
    raise SystemExit(main())
