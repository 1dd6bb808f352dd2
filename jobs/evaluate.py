"""Stage 6: split the history (eval.protocol), fit on train only, compare the blend with each scorer
alone, each ablation and popularity; metrics.json in the lake, the same plus charts in MLflow."""
import _bootstrap  # noqa: F401

from genre_lib import jobrun, metrics
from genre_lib.datasets import movielens
from genre_lib.tables import read_history_pandas


def work(ctx: jobrun.JobContext) -> dict:
    from genre_lib import recommend  # imports torch: only once the arguments are valid

    history = read_history_pandas(ctx.lake, ctx.ds, ctx.cfg.genres.lookback_days)
    if ctx.cfg.data.format == "movielens-100k" and ctx.cfg.eval.protocol == "stratified":
        history = movielens.in_source_order(history, ctx.cfg.data_path)  # the published split
    catalogue = recommend.Catalogue.from_lake(ctx.lake, ctx.ds)
    genres_ds = ctx.lake.latest("item_genres", ctx.ds)
    item_genres = ctx.lake.read_pandas("item_genres", genres_ds) if genres_ds else None
    payload = metrics.evaluate(history, catalogue, ctx.cfg, item_genres=item_genres, spark=ctx.spark)
    ctx.lake.write_json("evaluation", ctx.ds, "metrics.json", payload, ctx.manifest())
    return metrics.log_to_mlflow(payload)


if __name__ == "__main__":
    raise SystemExit(jobrun.main("evaluate", work))
