"""Stage `train_classifier`: train the genre classifier on the night's embeddings, compare it with
its baselines, register it, let the champion gate decide, then score every item with the champion.

    python jobs/train_classifier.py --config configs/default.yaml --run-date 2026-11-22

Reads items_clean, item_embeddings and genre_vocab at ds; writes item_genre_scores at ds.
"""
from __future__ import annotations

import logging
import tempfile

import _bootstrap  # noqa: F401

from genre_lib import jobrun
from genre_lib.pipeline import check_finetune_layers

STAGE = "train_classifier"
log = logging.getLogger(f"genre.{STAGE}")


def work(ctx: jobrun.JobContext) -> dict:
    import mlflow

    from genre_lib import training
    from genre_lib.classifier import predict_proba

    cfg = ctx.cfg.classifier
    items = ctx.lake.read_pandas("items_clean", ctx.ds)
    embeddings = ctx.lake.read_pandas("item_embeddings", ctx.ds)
    vocab_ds = ctx.lake.latest("genre_vocab", ctx.ds)
    vocab = ctx.lake.read_pandas("genre_vocab", vocab_ds) if vocab_ds else None
    genres = training.genre_order(vocab, items)
    # classifier.finetune_layers > 0: fine-tune the encoder's top layers on a GPU (or on CPU when
    # classifier.finetune_on_cpu); without one, the head alone, said in the log and as a run tag.
    # Too many layers for the encoder is an error here, before any training.
    finetune, skipped = training.prepare_finetune(cfg, ctx.cfg.encoder)
    if skipped:
        mlflow.set_tag("finetune_skipped", skipped)
    encode_words = None
    if cfg.word_branch != "off" and finetune is None:  # a fine-tuned model reads token ids, not words
        # the word branch embeds each distinct content word with the night's encoder (once per word)
        from genre_lib.encoder import TextEncoder
        encode_words = TextEncoder.from_config(ctx.cfg.encoder, progress_every_s=0).encode
    data = training.build_data(items, embeddings, genres, encode_words, cfg.max_words, ctx.cfg.encoder.model)

    leaks = training.template_leaks_labels(ctx.cfg.encoder.text_template)
    if leaks:
        log.warning("encoder.text_template %r embeds the genres: test scores are inflated and this model "
                    "will not replace an existing champion", ctx.cfg.encoder.text_template)
    mlflow.set_tags({"label_leakage": str(leaks), "genre_vocab_ds": vocab_ds or "derived from items_clean",
                     "embedding_model_id": data.model_id})
    mlflow.log_params({"train.genres": ",".join(genres)[:500], "train.embedding_dim": data.emb_dim, "train.input_dim": data.X.shape[1],
                       "train.split": "sha256(seed:item_id)", "train.pos_weight_cap": 30.0,
                       "train.tfidf": "word 1-2 grams, OvR logistic regression, C on validation",
                       "train.features": data.features[:500]})
    if finetune is not None:
        mlflow.log_params({"train.finetune_layers": finetune.n_layers, "train.finetune_lr": finetune.lr,
                           "train.finetune_device": finetune.device, "train.finetune_model": finetune.model_id})

    result = training.run_experiment(
        data, cfg, on_epoch=lambda row: mlflow.log_metrics(
            {f"epoch_{k}": v for k, v in row.items() if k != "epoch"}, step=row["epoch"]), finetune=finetune)

    lab = data.labelled
    inputs = result.inputs  # embeddings (+ word vectors), or token rows of a fine-tuned model
    with tempfile.TemporaryDirectory() as tmp:
        training.plot_all(result, tmp, predict_proba(result.model, inputs[~lab]) if (~lab).any() else None)
        mlflow.log_artifacts(tmp, "plots")
    mlflow.log_text(result.per_genre.to_csv(index=False), "per_genre.csv")

    template = ctx.cfg.encoder.text_template
    trained_from = training.fingerprint(data, cfg, data.encoder_texts(template) if finetune else None)
    extra = ({"text_template": template, "max_length": inputs.shape[1] // 2, "finetune_layers": finetune.n_layers,
              "pooling": finetune.pooling, "normalize": finetune.normalize} if finetune else None)
    version = training.log_classifier(result.model, inputs[lab], genres, result.thresholds, data.model_id,
                                      cfg.model_name, trained_from, result.features,
                                      finetune.tokenizer if finetune else None, extra)
    va = result.split == "val"
    # the champion is re-scored in its own layout: today's embeddings, or the texts for a fine-tuned one
    gate = training.champion_gate(cfg.model_name, version, result.metrics["val_macro_f1"],
                                  data.X[lab][va], data.Y[lab][va], genres, data.model_id, leaks, trained_from,
                                  data.features, texts_va=lambda tpl: data.encoder_texts(tpl)[lab][va])

    # Inference always goes through the alias, whichever version the gate left there.
    champion = training.load_champion(cfg.model_name)
    champion_version = champion.version
    scores = training.score_items(data, predict_proba(champion.model, training.champion_inputs(champion, data)))
    manifest = ctx.lake.write_pandas("item_genre_scores", ctx.ds, scores, ctx.manifest(
        model_name=cfg.model_name, model_version=champion_version, embedding_model_id=data.model_id))
    return {**result.metrics, **{k: v for k, v in gate.items() if isinstance(v, float)},
            "model_version": float(version), "champion_version": float(champion_version),
            "promoted": float(gate["gate_decision"] == "promoted"),
            "items_scored": len(data.item_ids), "items_predicted": int((~lab).sum()),
            "score_rows": manifest["row_count"]}


def main(argv=None) -> int:
    return jobrun.main(STAGE, work, argv, preflight=check_finetune_layers)


if __name__ == "__main__":
    raise SystemExit(main())
