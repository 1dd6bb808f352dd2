"""Stage train_classifier: train the genre classifier on the night's embeddings (classifier/experiment.py),
compare it with the baselines, register it, let the champion gate decide, then score every item with
the champion -> item_genre_scores."""
from __future__ import annotations

import logging

from genre_lib.classifier.experiment import night_data, run_experiment
from genre_lib.classifier.model import predict_proba
from genre_lib.classifier.training import POS_WEIGHT_CAP, prepare_finetune

log = logging.getLogger("genre.training")


def run(ctx) -> dict:
    """Train on the night's embeddings, compare with the baselines, register, let the champion gate
    decide, then score every item with the champion: items_clean, item_embeddings and genre_vocab at
    ds in, item_genre_scores at ds out."""
    import tempfile

    import mlflow

    from genre_lib.classifier import genre_data, plots, registry

    cfg = ctx.cfg.classifier
    finetune, skipped = prepare_finetune(cfg, ctx.cfg.encoder)
    if skipped:
        mlflow.set_tag("finetune_skipped", skipped)
    # a fine-tuned model reads token ids, not words
    data, vocab_ds = night_data(ctx, words=finetune is None)
    genres = data.genres

    template = ctx.cfg.encoder.text_template
    leaks = genre_data.template_leaks_labels(template)
    if leaks:
        log.warning("encoder.text_template %r embeds the genres: test scores are inflated and this model "
                    "will not replace an existing champion", template)
    mlflow.set_tags({"label_leakage": str(leaks), "genre_vocab_ds": vocab_ds or "derived from items_clean",
                     "embedding_model_id": data.model_id})
    mlflow.log_params({"train.genres": ",".join(genres)[:500], "train.embedding_dim": data.emb_dim,
                       "train.input_dim": data.X.shape[1], "train.split": "sha256(seed:item_id)",
                       "train.pos_weight_cap": POS_WEIGHT_CAP,
                       "train.tfidf": "word 1-2 grams, OvR logistic regression, C on validation",
                       "train.features": data.features[:500]})
    if finetune is not None:
        mlflow.log_params({"train.finetune_layers": finetune.n_layers, "train.finetune_lr": finetune.lr,
                           "train.finetune_device": finetune.device, "train.finetune_model": finetune.model_id})

    from genre_lib.orchestration.progress import Throttle
    progress = Throttle()

    def on_epoch(row: dict) -> None:
        mlflow.log_metrics({f"epoch_{k}": v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        if progress.due() or row["epoch"] == cfg.epochs:  # the task log, at a steady interval
            log.info("train_classifier %s: epoch %d/%d train_loss %.4f val_macro_f1 %.4f", ctx.ds, row["epoch"],
                     cfg.epochs, row["train_loss"], row["val_macro_f1"])

    result = run_experiment(data, cfg, finetune=finetune, on_epoch=on_epoch)
    lab, inputs = data.labelled, result.inputs
    with tempfile.TemporaryDirectory() as tmp:
        plots.plot_all(result, tmp, predict_proba(result.model, inputs[~lab]) if (~lab).any() else None)
        mlflow.log_artifacts(tmp, "plots")
    mlflow.log_text(result.per_genre.to_csv(index=False), "per_genre.csv")

    trained_from = registry.fingerprint(data, cfg, data.encoder_texts(template) if finetune else None)
    version = registry.log_classifier(result.model, inputs[lab], genres, result.thresholds, data.model_id,
                                      cfg.model_name, trained_from, result.features,
                                      finetune.tokenizer if finetune else None,
                                      finetune.metadata(inputs) if finetune else None)
    va = result.split == "val"
    # the champion is re-scored in its own layout: today's embeddings, or the texts for a fine-tuned one
    gate = registry.champion_gate(cfg.model_name, version, result.metrics["val_macro_f1"],
                                  data.X[lab][va], data.Y[lab][va], genres, data.model_id, leaks, trained_from,
                                  data.features, texts_va=lambda tpl: data.encoder_texts(tpl)[lab][va])

    # inference always goes through the alias, whichever version the gate left there
    champion = registry.load_champion(cfg.model_name)
    scores_table = genre_data.score_items(data, predict_proba(champion.model, registry.champion_inputs(champion, data)))
    manifest = ctx.lake.write_pandas("item_genre_scores", ctx.ds, scores_table, ctx.manifest(
        model_name=cfg.model_name, model_version=champion.version, embedding_model_id=data.model_id))
    return {**result.metrics, **{k: v for k, v in gate.items() if isinstance(v, float)},
            "model_version": float(version), "champion_version": float(champion.version),
            "promoted": float(gate["gate_decision"] == "promoted"),
            "items_scored": len(data.item_ids), "items_predicted": int((~lab).sum()),
            "score_rows": manifest["row_count"]}
