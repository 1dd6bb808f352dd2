"""Training the genre classifier: the loop, fine-tuning the encoder's top layers, the baselines,
one experiment, and the stage `train_classifier` (the champion scores every item).

The model is `genre_lib.classifier.model`; inputs and the item split `genre_data`; thresholds and scores
`thresholds`; the MLflow registry and the champion gate `registry`; plots `plots`.
"""
from __future__ import annotations

import copy
import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from genre_lib.classifier.model import FinetunedClassifier, GenreClassifier, longest_tokens, predict_proba, tokenize
from genre_lib.config.settings import ClassifierConfig, EncoderConfig
from genre_lib.classifier.genre_data import GenreData, split_items
from genre_lib.classifier.registry import FINETUNED
from genre_lib.classifier.thresholds import scores, tune_thresholds, tuned_macro_f1

log = logging.getLogger("genre.training")

POS_WEIGHT_CAP = 30.0  # a genre with two examples must not dominate the loss


# --- the training loop -----------------------------------------------------------------------------
def train_head(Xtr: np.ndarray, Ytr: np.ndarray, Xva: np.ndarray, Yva: np.ndarray, cfg: ClassifierConfig,
               on_epoch: Optional[Callable[[dict], None]] = None, word_dim: int = 0, max_words: int = 0,
               use_words: bool = True) -> tuple[GenreClassifier, list[dict]]:
    """Train the MLP head (and the word branch when the input carries words and `use_words`);
    keep the epoch with the best validation macro-F1 (early stopping)."""
    torch.manual_seed(cfg.seed)
    model = GenreClassifier(Xtr.shape[1] - word_dim * max_words, Ytr.shape[1], cfg.hidden, cfg.dropout,
                            word_dim, max_words, use_words)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return _fit(model, opt, Xtr, Ytr, Xva, Yva, cfg, on_epoch)


def _pos_weight(Ytr: np.ndarray) -> torch.Tensor:
    """Imbalance: each genre's positives weighed by its negative/positive ratio (capped, so a genre
    with two examples does not dominate the loss)."""
    pos = Ytr.sum(0)
    return torch.tensor(np.clip((len(Ytr) - pos) / np.maximum(pos, 1), 1.0, POS_WEIGHT_CAP), dtype=torch.float32)


@torch.no_grad()
def _batched_logits(model: nn.Module, x: torch.Tensor, device: str, batch: int) -> torch.Tensor:
    out = [model.logits(x[i:i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(out) if out else torch.zeros((0, 0))


def _fit(model: nn.Module, opt: torch.optim.Optimizer, Xtr: np.ndarray, Ytr: np.ndarray, Xva: np.ndarray,
         Yva: np.ndarray, cfg: ClassifierConfig, on_epoch: Optional[Callable[[dict], None]] = None,
         device: str = "cpu", eval_batch: Optional[int] = None):
    """The loop both models share: BCE with `_pos_weight`, seeded shuffles, per-epoch validation
    macro-F1 at thresholds tuned on validation, and the best epoch kept (early stopping)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    pos_weight = _pos_weight(Ytr)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device))
    loss_cpu = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    xtr, ytr = torch.from_numpy(Xtr), torch.from_numpy(Ytr)
    xva, yva = torch.from_numpy(Xva), torch.from_numpy(Yva)
    history: list[dict] = []
    best_f1, best_state, stale = -1.0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total = 0.0
        for idx in torch.randperm(len(xtr), generator=gen).split(cfg.batch_size):
            loss = loss_fn(model.logits(xtr[idx].to(device)), ytr[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        Ltr = _batched_logits(model, xtr, device, eval_batch or max(len(xtr), 1))
        Lva = _batched_logits(model, xva, device, eval_batch or max(len(xva), 1))
        val_loss = loss_cpu(Lva, yva).item() if len(xva) else float("nan")
        Ptr, Pva = torch.sigmoid(Ltr).numpy(), torch.sigmoid(Lva).numpy()
        thr = tune_thresholds(Pva, Yva)
        row = {"epoch": epoch, "train_loss": total / len(xtr), "val_loss": val_loss,
               "train_macro_f1": scores(Ptr, Ytr, thr, with_ap=False)["macro_f1"],
               "val_macro_f1": scores(Pva, Yva, thr, with_ap=False)["macro_f1"]}
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if row["val_macro_f1"] > best_f1 + 1e-4:
            best_f1, stale = row["val_macro_f1"], 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, history



# --- fine-tuning the top encoder layers -------------------------------------------------------------


@dataclass
class FinetuneSetup:
    """What `run_experiment` needs to fine-tune: the encoder as loaded (left untouched: each training
    works on a copy), its tokenizer, and how the embed stage turns an item into a vector."""
    encoder: nn.Module
    tokenizer: object
    n_layers: int                 # classifier.finetune_layers
    model_id: str                 # encoder.model
    template: str                 # encoder.text_template
    max_length: int               # encoder.max_length (the token cap)
    pooling: str = "mean"
    normalize: bool = True
    device: str = "cpu"
    lr: float = 2e-5

    @property
    def features(self) -> str:
        """The input layout of a fine-tuned model: token ids of texts, not cached embeddings."""
        return f"{FINETUNED}{self.n_layers}:{self.model_id}"

    @property
    def token_types(self) -> bool:
        return "token_type_ids" in getattr(self.tokenizer, "model_input_names", [])

    def metadata(self, inputs: np.ndarray) -> dict:
        """What rebuilds a fine-tuned model's input from a text, stored with the model."""
        return {"text_template": self.template, "max_length": inputs.shape[1] // 2,
                "finetune_layers": self.n_layers, "pooling": self.pooling, "normalize": self.normalize}

    def inputs(self, data: GenreData) -> np.ndarray:
        """Token rows for every item of `data`, padded to the longest text (at most max_length)."""
        texts = data.encoder_texts(self.template)
        cap = min(self.max_length, int(getattr(self.encoder.config, "max_position_embeddings", self.max_length)))
        return tokenize(self.tokenizer, texts, longest_tokens(self.tokenizer, texts, cap))


def prepare_finetune(cfg: ClassifierConfig, enc: EncoderConfig,
                     cuda: Optional[bool] = None) -> tuple[Optional[FinetuneSetup], Optional[str]]:
    """(setup, None) when the night fine-tunes; (None, reason) when finetune_layers > 0 but the head
    alone is trained (no CUDA device and no classifier.finetune_on_cpu); (None, None) for N = 0.
    N against the encoder's layer count is checked before the stage starts (pipeline.preflight)."""
    n = cfg.finetune_layers
    if n <= 0:
        return None, None
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if enc.device == "cpu":
        cuda = False
    if not cuda and not cfg.finetune_on_cpu:
        reason = "no CUDA device" if enc.device != "cpu" else "encoder.device=cpu"
        log.warning("classifier.finetune_layers=%d asks to fine-tune the encoder, but %s (and "
                    "classifier.finetune_on_cpu is false): training the head only", n, reason)
        return None, reason
    from genre_lib.classifier.encoder import TextEncoder

    te = TextEncoder.from_config(enc, device="cuda" if cuda else "cpu", progress_every_s=0)
    return FinetuneSetup(te.model, te.tokenizer, n, enc.model, enc.text_template, enc.max_length,
                         enc.pooling, enc.normalize, te.device, cfg.finetune_lr), None


def train_finetune(setup: FinetuneSetup, Ttr: np.ndarray, Ytr: np.ndarray, Tva: np.ndarray, Yva: np.ndarray,
                   cfg: ClassifierConfig, on_epoch: Optional[Callable[[dict], None]] = None
                   ) -> tuple[FinetunedClassifier, list[dict]]:
    """The head and the top `setup.n_layers` encoder layers trained together on token rows
    (`setup.inputs`): head at cfg.lr, encoder layers at setup.lr, the rest of the encoder frozen.
    Same loss, class weights, per-epoch validation macro-F1 and early stopping as `train_head`."""
    torch.manual_seed(cfg.seed)
    L = Ttr.shape[1] // 2
    model = FinetunedClassifier(copy.deepcopy(setup.encoder).float(), Ytr.shape[1], setup.n_layers, L,
                                cfg.hidden, cfg.dropout, setup.pooling, setup.normalize, setup.token_types).to(setup.device)
    tuned = [p for p in model.encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": list(model.head.parameters()), "lr": cfg.lr},
                             {"params": tuned, "lr": setup.lr}], weight_decay=cfg.weight_decay)
    return _fit(model, opt, np.ascontiguousarray(Ttr, dtype=np.int64), Ytr, np.ascontiguousarray(Tva, dtype=np.int64),
                Yva, cfg, on_epoch, device=setup.device, eval_batch=256)



# --- baselines -------------------------------------------------------------------------------------
def tfidf_baseline(texts: np.ndarray, Y: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, dict]:
    """TF-IDF (word 1-2 grams) + one-vs-rest logistic regression, C picked on validation.
    Returns probabilities for every row of `texts`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    tr, va = split == "train", split == "val"
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), strip_accents="unicode")
    Xtr = vec.fit_transform(texts[tr])
    Xall = vec.transform(texts)
    best = (-1.0, None, None)
    for C in (1.0, 4.0, 16.0):
        clf = OneVsRestClassifier(LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=1000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # genres without a train positive get a constant predictor
            clf.fit(Xtr, Y[tr])
            P = clf.predict_proba(Xall)
        f1 = tuned_macro_f1(P[va], Y[va])
        if f1 > best[0]:
            best = (f1, C, P)
    return best[2], {"tfidf_C": best[1], "tfidf_vocabulary": len(vec.vocabulary_)}


def prior_baseline(Y: np.ndarray, split: np.ndarray) -> np.ndarray:
    """Every item gets each genre's train frequency: the best a model that ignores the text can do."""
    return np.tile(Y[split == "train"].mean(0), (len(Y), 1))



# --- one experiment --------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: nn.Module               # GenreClassifier, or FinetunedClassifier when fine-tuned
    genres: list[str]
    thresholds: np.ndarray
    split: np.ndarray              # over the labelled items of the GenreData, in order
    history: list[dict]
    metrics: dict                  # flat, ready for MLflow
    per_genre: pd.DataFrame
    probs: dict = field(default_factory=dict)   # model -> probabilities over the labelled items
    inputs: Optional[np.ndarray] = None         # the model's input rows for every item of the data
    features: str = ""                          # the model's input layout (GenreData.features or finetuned:N:id)


def run_experiment(data: GenreData, cfg: ClassifierConfig,
                   on_epoch: Optional[Callable[[dict], None]] = None,
                   finetune: Optional[FinetuneSetup] = None) -> TrainResult:
    """Split, train, tune thresholds on validation, score classifier and baselines on test.
    With `finetune`, the model is the encoder's top layers + head trained on the items' texts
    (the word branch is not used); split, thresholds, baselines and metrics are the same."""
    lab = data.labelled
    X, Y, texts = data.X[lab], data.Y[lab], data.texts[lab]
    split = split_items(data.item_ids[lab], cfg.val_share, cfg.test_share, cfg.seed)
    tr, va, te = (split == s for s in ("train", "val", "test"))
    if tr.sum() < 2 or va.sum() < 1 or te.sum() < 1:
        raise ValueError(f"too few labelled items to train and evaluate: {int(lab.sum())} "
                         f"(train {int(tr.sum())}, val {int(va.sum())}, test {int(te.sum())})")

    if finetune is not None:
        inputs = finetune.inputs(data)
        T = inputs[lab]
        m, h = train_finetune(finetune, T[tr], Y[tr], T[va], Y[va], cfg, on_epoch)
        candidates, use_words, features = {"finetuned": (m, h, max(r["val_macro_f1"] for r in h))}, False, finetune.features
        model, history = m, h
        probs = {"classifier": predict_proba(model, T)}
    else:
        # Head only, and head + word branch when the data carries words: the one with the better
        # validation macro-F1 is the model (a choice made on validation, like early stopping).
        variants = []
        if data.max_words and cfg.word_branch in ("auto", "on"):
            variants.append(True)
        if not variants or cfg.word_branch == "auto":
            variants.append(False)
        candidates = {}
        for use_words in variants:
            # per-epoch logging follows the first variant trained; the kept model's history is returned
            m, h = train_head(X[tr], Y[tr], X[va], Y[va], cfg, on_epoch if not candidates else None,
                              data.word_dim, data.max_words, use_words)
            candidates[use_words] = (m, h, max(r["val_macro_f1"] for r in h))
        use_words = max(candidates, key=lambda k: (candidates[k][2], k))
        model, history, _ = candidates[use_words]
        inputs, features = data.X, data.features
        probs = {"classifier": predict_proba(model, X)}
    probs["tfidf"], tfidf_info = tfidf_baseline(texts, Y, split)
    probs["prior"] = prior_baseline(Y, split)

    metrics: dict = {"n_items": len(data.item_ids), "n_labelled": int(lab.sum()), "n_genres": len(data.genres),
                     "n_train": int(tr.sum()), "n_val": int(va.sum()), "n_test": int(te.sum()),
                     "best_epoch": max(history, key=lambda r: r["val_macro_f1"])["epoch"],
                     "epochs_run": len(history), "word_branch": float(use_words),
                     "finetune_layers": float(finetune.n_layers if finetune else 0), **tfidf_info}
    for k, (_m, _h, f1) in candidates.items():
        metrics[f"val_macro_f1_{k if isinstance(k, str) else ('with_words' if k else 'head_only')}"] = f1
    per_genre = pd.DataFrame({"genre": data.genres, "train_positives": Y[tr].sum(0).astype(int),
                              "test_positives": Y[te].sum(0).astype(int)})
    thresholds = None
    for name, P in probs.items():
        thr = tune_thresholds(P[va], Y[va])  # validation only
        val, test = scores(P[va], Y[va], thr), scores(P[te], Y[te], thr)
        prefix = "" if name == "classifier" else f"{name}_"
        metrics.update({f"{prefix}val_macro_f1": val["macro_f1"], f"{prefix}test_macro_f1": test["macro_f1"],
                        f"{prefix}test_micro_f1": test["micro_f1"], f"{prefix}test_macro_ap": test["macro_ap"]})
        per_genre[f"{name}_f1"] = test["f1"]
        per_genre[f"{name}_ap"] = test["ap"]
        if name == "classifier":
            thresholds = thr
            per_genre["threshold"] = thr
            per_genre["test_predicted_positives"] = (P[te] >= thr).sum(0)
    metrics["gain_over_tfidf"] = metrics["test_macro_f1"] - metrics["tfidf_test_macro_f1"]
    metrics["gain_over_prior"] = metrics["test_macro_f1"] - metrics["prior_test_macro_f1"]
    for row in per_genre.itertuples():
        key = metric_key(row.genre)
        if not np.isnan(row.classifier_f1):
            metrics[f"test_f1.{key}"] = float(row.classifier_f1)
            metrics[f"test_ap.{key}"] = float(row.classifier_ap)
    return TrainResult(model, data.genres, thresholds, split, history, metrics, per_genre, probs, inputs, features)


def metric_key(genre: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and space (\"Children's\" -> Children_s)."""
    return re.sub(r"[^\w\-./ ]", "_", genre)


# --- the stage ------------------------------------------------------------------------------------
def night_data(ctx, hidden: frozenset = frozenset(), words: bool = True) -> tuple[GenreData, Optional[str]]:
    """The night's classifier inputs (items_clean + item_embeddings, genres in the vocabulary's order,
    each content word embedded once when `words` and the word branch is on) and the vocabulary's ds;
    `hidden` items lose their genre labels (cold-item evaluation)."""
    from genre_lib.classifier.model import genre_data

    items = ctx.lake.read_pandas("items_clean", ctx.ds)
    if hidden:
        items["genres"] = [[] if i in hidden else g for i, g in zip(items["item_id"], items["genres"])]
    vocab_ds = ctx.lake.latest("genre_vocab", ctx.ds)
    genres = genre_data.genre_order(ctx.lake.read_pandas("genre_vocab", vocab_ds) if vocab_ds else None, items)
    cfg, encode_words = ctx.cfg.classifier, None
    if words and cfg.word_branch != "off":
        from genre_lib.classifier.encoder import TextEncoder
        encode_words = TextEncoder.from_config(ctx.cfg.encoder, progress_every_s=0).encode
    embeddings = ctx.lake.read_pandas("item_embeddings", ctx.ds)
    return genre_data.build_data(items, embeddings, genres, encode_words, cfg.max_words, ctx.cfg.encoder.model), vocab_ds


def run(ctx) -> dict:
    """Train on the night's embeddings, compare with the baselines, register, let the champion gate
    decide, then score every item with the champion: items_clean, item_embeddings and genre_vocab at
    ds in, item_genre_scores at ds out."""
    import tempfile

    import mlflow

    from genre_lib.classifier.model import genre_data
    from genre_lib.classifier.model import plots
    from genre_lib.classifier.model import registry

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
