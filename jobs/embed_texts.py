"""Embed item texts: items_clean -> item_embeddings, re-embedding only texts not seen before."""

import _bootstrap  # noqa: F401

from genre_lib import jobrun


def work(ctx: jobrun.JobContext) -> dict:
    import mlflow
    from genre_lib.encoder import embed_night

    enc = ctx.cfg.encoder
    spark = ctx.spark if enc.engine == "spark" else None
    res = embed_night(ctx.lake, ctx.ds, enc, ctx.manifest(), spark=spark)
    settings = {k: v for k, v in res.stats.items() if isinstance(v, str) or k in ("batch_size", "token_budget", "threads")}
    mlflow.log_params({f"embed.{k}": v for k, v in {**settings, "engine": enc.engine}.items() if v is not None})
    return {"items": len(res.table), "embedded": res.embedded, "reused": res.reused,
            **{k: v for k, v in res.stats.items() if k in ("dim", "texts_per_s", "encode_seconds", "load_seconds", "embed_seconds")}}


if __name__ == "__main__":
    raise SystemExit(jobrun.main("embed_texts", work))
