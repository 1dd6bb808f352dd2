"""Training the genre classifier: data, split, loop, thresholds, baselines, the champion gate, plots.

The model itself is `genre_lib.classifier`. Everything here up to `run_experiment` is plain numpy/
torch/scikit-learn and testable without MLflow; the registry and plotting helpers come after it.

Honesty rules, because reviewers compare these numbers across nights:
- the split is by item and derived from a hash of the item id, so an item stays in the same split
  night after night (a champion re-scored on today's validation set has never trained on it);
- decision thresholds are tuned on validation only, for every model alike (classifier, TF-IDF,
  prior), and test is touched once, at the end;
- macro-F1 averages the genres that have at least one positive in the scored split (a genre absent
  from a split has no defined F1), the same way for every model.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from genre_lib.classifier import (FinetunedClassifier, GenreClassifier, longest_tokens, predict_proba, tokenize,
                                  word_features)
from genre_lib.config import ClassifierConfig, EncoderConfig

log = logging.getLogger("genre.training")

THRESHOLD_GRID = np.concatenate([[0.01, 0.02, 0.03], np.round(np.arange(0.05, 0.96, 0.05), 2)])
CHAMPION = "champion"


# --- data ------------------------------------------------------------------------------------------
def item_text(items: pd.DataFrame) -> pd.Series:
    """Title, description and tags: the TF-IDF baseline's text. Genres are left out on purpose:
    they are the labels, and putting them in the input would let any model read the answer."""
    parts = [items[c].fillna("").astype(str) for c in ("title", "description", "tags") if c in items]
    text = parts[0]
    for p in parts[1:]:
        text = text.str.cat(p, sep=". ")
    return text.str.replace(r"(\.\s*)+$", "", regex=True).str.strip()


def template_leaks_labels(template: str) -> bool:
    """True when the encoder's text template puts the genres into the embedded text."""
    return "{genres" in template


@dataclass
class GenreData:
    item_ids: np.ndarray          # (n,) str
    X: np.ndarray                 # (n, dim) float32 embeddings
    Y: np.ndarray                 # (n, G) float32 0/1, all zero for unlabelled items
    labelled: np.ndarray          # (n,) bool: the item had genres in items_clean
    texts: np.ndarray             # (n,) str, for the TF-IDF baseline
    genres: list[str]
    model_id: str = ""            # the encoder that made X
    emb_dim: int = 0              # X = [item embedding (emb_dim) | max_words x word vector]; 0: all of X
    word_dim: int = 0
    max_words: int = 0
    word_model_id: str = ""       # the encoder that made the word vectors
    fields: Optional[pd.DataFrame] = None  # item_id, title, description, genres, tags, in item order

    def __post_init__(self):
        if not self.emb_dim:
            self.emb_dim = int(self.X.shape[1]) - self.word_dim * self.max_words

    def encoder_texts(self, template: str) -> np.ndarray:
        """Every item's text as the embed stage renders it with `template` (a fine-tuned model's input)."""
        from genre_lib.encoder import item_texts

        if self.fields is None:
            raise ValueError("GenreData has no item fields: build it with build_data to render texts")
        return np.asarray(item_texts(self.fields, template), dtype=object)

    @property
    def features(self) -> str:
        """The input layout, stored with a model: a champion must read the same layout to compete."""
        return (f"embedding{self.emb_dim}+words{self.max_words}x{self.word_dim}:{self.word_model_id}"
                if self.max_words else f"embedding{self.emb_dim}")


def genre_order(vocab: Optional[pd.DataFrame], items: pd.DataFrame) -> list[str]:
    """The stable genre order: the versioned vocabulary when there is one, else sorted genres."""
    if vocab is not None and len(vocab):
        return vocab.sort_values("genre_index")["genre"].astype(str).tolist()
    return sorted({g for gs in items["genres"] for g in (gs if gs is not None else [])})


def build_data(items: pd.DataFrame, embeddings: pd.DataFrame, genres: list[str],
               encode_words: Optional[Callable[[list[str]], np.ndarray]] = None, max_words: int = 0,
               word_model_id: str = "") -> GenreData:
    """Join items with their embeddings (items without one are dropped, with a warning). With
    `encode_words` (the item encoder) and `max_words`, X also carries each item's word vectors
    (`classifier.word_features` over `item_text`, every item alike: no label is used)."""
    emb = embeddings.drop_duplicates("item_id", keep="last").set_index("item_id")
    items = items.drop_duplicates("item_id", keep="last")
    missing = ~items["item_id"].isin(emb.index)
    if missing.any():
        log.warning("%d of %d items have no embedding and get no genre scores", missing.sum(), len(items))
    items = items[~missing].sort_values("item_id").reset_index(drop=True)
    if items.empty:
        raise ValueError("no item has an embedding: run the embed stage first")
    e = emb.loc[items["item_id"]]
    X = np.stack(e["vector"].to_numpy()).astype(np.float32)
    index = {g: j for j, g in enumerate(genres)}
    Y = np.zeros((len(items), len(genres)), dtype=np.float32)
    unknown = 0
    for i, gs in enumerate(items["genres"]):
        for g in (gs if gs is not None else []):
            if g in index:
                Y[i, index[g]] = 1.0
            else:
                unknown += 1
    if unknown:
        log.warning("%d item genres are not in the genre vocabulary and are ignored", unknown)
    labelled = np.array([gs is not None and len(gs) > 0 for gs in items["genres"]])
    model_ids = e["model_id"].dropna().unique().tolist()
    if len(model_ids) > 1:
        raise ValueError(f"item_embeddings mixes encoders {model_ids}: vectors are not comparable")
    texts = item_text(items).to_numpy()
    word_dim = 0
    if encode_words is not None and max_words > 0:
        W = word_features(texts, encode_words, max_words)
        word_dim = W.shape[1] // max_words
        X = np.hstack([X, W])
    fields = items.reindex(columns=["item_id", "title", "description", "genres", "tags"]).reset_index(drop=True)
    return GenreData(items["item_id"].astype(str).to_numpy(), X, Y, labelled, texts, genres,
                     model_ids[0] if model_ids else "", emb_dim=X.shape[1] - word_dim * max_words if word_dim else 0,
                     word_dim=word_dim, max_words=max_words if word_dim else 0,
                     word_model_id=word_model_id if word_dim else "", fields=fields)


def split_items(item_ids: np.ndarray, val_share: float, test_share: float, seed: int) -> np.ndarray:
    """'train' / 'val' / 'test' per item from a seeded hash of its id: stable as the catalogue grows."""
    u = np.array([int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big") / 2.0 ** 64
                  for i in item_ids])
    return np.where(u < test_share, "test", np.where(u < test_share + val_share, "val", "train"))


# --- metrics and thresholds ------------------------------------------------------------------------
def _counts(P: np.ndarray, Y: np.ndarray, thr: np.ndarray):
    pred = P >= thr
    y = Y > 0.5
    tp = (pred & y).sum(0)
    fp = (pred & ~y).sum(0)
    fn = (~pred & y).sum(0)
    return tp, fp, fn


def _f1(tp, fp, fn):
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def tune_thresholds(P: np.ndarray, Y: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per-genre threshold maximising F1 on the data given (pass validation only). Genres with no
    positive there keep 0.5."""
    tp, fp, fn = _counts(P[:, :, None], Y[:, :, None], grid[None, None, :])
    f1 = _f1(tp, fp, fn)                                   # (G, T)
    thr = grid[f1.argmax(1)].astype(np.float64)
    thr[(Y > 0.5).sum(0) == 0] = 0.5
    return thr


def scores(P: np.ndarray, Y: np.ndarray, thr: np.ndarray, with_ap: bool = True) -> dict:
    """macro-F1 (over genres present), micro-F1, per-genre F1 and average precision."""
    from sklearn.metrics import average_precision_score

    tp, fp, fn = _counts(P, Y, thr)
    f1 = _f1(tp, fp, fn)
    present = (Y > 0.5).sum(0) > 0
    ap = np.full(Y.shape[1], np.nan)
    for j in np.flatnonzero(present) if with_ap else []:
        ap[j] = average_precision_score(Y[:, j], P[:, j])
    micro = float(_f1(tp.sum(), fp.sum(), fn.sum()))
    return {"macro_f1": float(f1[present].mean()) if present.any() else 0.0, "micro_f1": micro,
            "macro_ap": float(np.nanmean(ap)) if with_ap and present.any() else float("nan"),
            "f1": np.where(present, f1, np.nan), "ap": ap}


def tuned_macro_f1(P: np.ndarray, Y: np.ndarray) -> float:
    return scores(P, Y, tune_thresholds(P, Y), with_ap=False)["macro_f1"]


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
    return torch.tensor(np.clip((len(Ytr) - pos) / np.maximum(pos, 1), 1.0, 30.0), dtype=torch.float32)


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
FINETUNED = "finetuned:"


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

    def inputs(self, data: "GenreData") -> np.ndarray:
        """Token rows for every item of `data`, padded to the longest text (at most max_length)."""
        texts = data.encoder_texts(self.template)
        cap = min(self.max_length, int(getattr(self.encoder.config, "max_position_embeddings", self.max_length)))
        return tokenize(self.tokenizer, texts, longest_tokens(self.tokenizer, texts, cap))


def prepare_finetune(cfg: ClassifierConfig, enc: EncoderConfig,
                     cuda: Optional[bool] = None) -> tuple[Optional[FinetuneSetup], Optional[str]]:
    """(setup, None) when the night fine-tunes; (None, reason) when finetune_layers > 0 but the head
    alone is trained (no CUDA device and no classifier.finetune_on_cpu); (None, None) for N = 0.
    N above the encoder's layer count is a ValueError naming both, whatever the device."""
    n = cfg.finetune_layers
    if n <= 0:
        return None, None
    from genre_lib.encoder import encoder_layer_count

    layers = encoder_layer_count(enc.model)
    if n > layers:
        raise ValueError(f"classifier.finetune_layers={n} but encoder {enc.model!r} has only {layers} "
                         f"transformer layers")
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if enc.device == "cpu":
        cuda = False
    if not cuda and not cfg.finetune_on_cpu:
        reason = "no CUDA device" if enc.device != "cpu" else "encoder.device=cpu"
        log.warning("classifier.finetune_layers=%d asks to fine-tune the encoder, but %s (and "
                    "classifier.finetune_on_cpu is false): training the head only", n, reason)
        return None, reason
    from genre_lib.encoder import TextEncoder

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


# --- MLflow: the model, the registry and the champion gate -----------------------------------------
def fingerprint(data: "GenreData", cfg: ClassifierConfig, texts: Optional[Sequence[str]] = None) -> str:
    """What a model was trained from: the labelled embeddings, labels and settings (and, for a
    fine-tuned model, the texts it read). A rerun of the same night has the same fingerprint, so
    its identical model is no reason to move the alias."""
    h = hashlib.sha256()
    lab = data.labelled
    for part in (np.ascontiguousarray(data.X[lab], dtype=np.float32), np.ascontiguousarray(data.Y[lab])):
        h.update(part.tobytes())
    h.update(cfg.model_dump_json().encode())
    if texts is not None:
        for t in np.asarray(texts, dtype=object)[lab]:
            h.update(str(t).encode() + b"\x1f")
    return h.hexdigest()[:16]


def log_classifier(model: nn.Module, X_example: np.ndarray, genres: list[str], thresholds: np.ndarray,
                   model_id: str, registered_name: str, train_fingerprint: str = "", features: str = "",
                   tokenizer=None, extra_metadata: Optional[dict] = None) -> str:
    """Log the model to the active run (pt2 export: a traced graph, no pickle) with its signature,
    input example and the metadata inference needs; register it. Returns the new version.

    A fine-tuned model (`FinetunedClassifier`, features "finetuned:N:<encoder>") takes int64 token
    rows; its `tokenizer` is saved next to it (the model's extra_files) and `extra_metadata` holds
    what rebuilds its input from a text: text_template and max_length."""
    import tempfile
    from pathlib import Path

    import mlflow
    from mlflow.models import infer_signature

    model = model.cpu().eval()  # exported on CPU: loadable anywhere
    n = max(2, min(5, len(X_example)))  # batch > 1: the exported batch dimension stays dynamic
    dtype = np.int64 if np.issubdtype(np.asarray(X_example).dtype, np.integer) else np.float32
    example = np.ascontiguousarray(X_example[:n], dtype=dtype)
    signature = infer_signature(example, predict_proba(model, example).astype(np.float32))
    metadata = {"genres": list(genres), "thresholds": [float(t) for t in thresholds],
                "embedding_model_id": model_id, "dim": int(X_example.shape[1]),
                "features": features, "word_branch": bool(getattr(getattr(model, "head", model), "use_words", False)),
                "train_fingerprint": train_fingerprint, **(extra_metadata or {})}
    with tempfile.TemporaryDirectory() as tmp:
        extra_files = None
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
            extra_files = sorted(str(f) for f in Path(tmp).iterdir() if f.is_file())
        info = mlflow.pytorch.log_model(
            model, name="model", signature=signature, input_example=example, serialization_format="pt2",
            registered_model_name=registered_name, pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            extra_files=extra_files, metadata=metadata)
    return str(info.registered_model_version)


def is_finetuned(meta: dict) -> bool:
    return str(meta.get("features") or "").startswith(FINETUNED)


class Champion(NamedTuple):
    model: nn.Module
    meta: dict
    version: str
    tokenizer: object = None      # a fine-tuned champion's tokenizer (saved with it), else None


def load_champion(name: str) -> Optional[Champion]:
    """The current champion (model, metadata, version, tokenizer), loaded through
    `models:/<name>@champion`, or None when there is none."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, CHAMPION).version
    except MlflowException:
        return None
    uri = f"models:/{name}@{CHAMPION}"
    meta = mlflow.models.get_model_info(uri).metadata or {}
    if not is_finetuned(meta):
        return Champion(mlflow.pytorch.load_model(uri), meta, str(version))
    from pathlib import Path

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        model = mlflow.pytorch.load_model(local)
        tokenizer = AutoTokenizer.from_pretrained(str(Path(local) / "extra_files"), local_files_only=True)
    return Champion(model, meta, str(version), tokenizer)


def champion_inputs(champion: Champion, data: "GenreData", rows=slice(None)) -> np.ndarray:
    """The champion's input rows for `data.item_ids[rows]`, in its own layout: a fine-tuned champion
    reads the texts rendered with *its* template and tokenizer, a head reads today's embeddings."""
    meta = champion.meta
    if is_finetuned(meta):
        texts = data.encoder_texts(meta["text_template"])[rows]
        return tokenize(champion.tokenizer, texts, int(meta["max_length"]))
    return data.X[rows]


def incompatibility(meta: dict, genres: list[str], dim: int, model_id: str, features: str = "",
                    has_texts: bool = False) -> Optional[str]:
    """Why a registered model cannot score today's inputs (None when it can). A fine-tuned model
    reads texts with its own tokenizer, so it needs only the same genres and the items' texts;
    any other model reads today's embedding rows (`dim`, `model_id`, layout `features`)."""
    if list(meta.get("genres", [])) != list(genres):
        return "genre vocabulary differs"
    if is_finetuned(meta):
        return None if has_texts else f"champion reads texts ({meta.get('features')}) and no texts were given"
    if int(meta.get("dim", -1)) != dim:
        return f"embedding dim {meta.get('dim')} != {dim}"
    if meta.get("embedding_model_id", "") != model_id:
        return f"embedding model {meta.get('embedding_model_id')!r} != {model_id!r}"
    theirs = meta.get("features") or f"embedding{meta.get('dim')}"  # versions before the word branch
    ours = features or f"embedding{dim}"
    if theirs != ours:
        return f"input layout {theirs!r} != {ours!r}"
    return None


def champion_gate(name: str, new_version: str, new_val_f1: float, Xva: np.ndarray, Yva: np.ndarray,
                  genres: list[str], model_id: str, leaks_labels: bool = False, train_fingerprint: str = "",
                  features: str = "", texts_va: Optional[Callable[[str], Sequence[str]]] = None) -> dict:
    """Move `champion` to the new version only if its validation macro-F1 is at least the current
    champion's, re-scored now on the same validation items with the same protocol (thresholds
    tuned on validation for both). The decision and both numbers become tags on the version and
    the active run.

    The champion is re-scored in its own input layout: `Xva` are today's embedding rows of the
    validation items (layout `features`, what a head champion reads, whatever the new model
    reads), and `texts_va(template)` renders the same items' texts for a fine-tuned champion. A
    champion that cannot read what is given (another vocabulary, encoder or layout) cannot be
    compared and the new version is promoted, with the reason recorded."""
    import mlflow

    client = mlflow.MlflowClient()
    current = load_champion(name)
    out = {"gate_new_version": new_version, "gate_new_val_macro_f1": new_val_f1}
    if current is None:
        promote, reason = True, "no champion yet"
    else:
        meta, champ_version = current.meta, current.version
        out["gate_champion_version"] = champ_version
        why = incompatibility(meta, genres, Xva.shape[1], model_id, features, has_texts=texts_va is not None)
        if why:
            promote, reason = True, f"champion v{champ_version} cannot score today's data: {why}"
        else:
            if is_finetuned(meta):
                Xc = tokenize(current.tokenizer, texts_va(meta["text_template"]), int(meta["max_length"]))
                out["gate_champion_input"] = "texts"
            else:
                Xc = Xva
                out["gate_champion_input"] = "embeddings"
            champ_f1 = tuned_macro_f1(predict_proba(current.model, Xc), Yva)
            out["gate_champion_val_macro_f1"] = champ_f1
            if leaks_labels:
                promote, reason = False, "encoder text template contains the genres (label leakage)"
            elif train_fingerprint and meta.get("train_fingerprint") == train_fingerprint and new_val_f1 <= champ_f1:
                promote, reason = False, f"same training data and settings as champion v{champ_version}, not better"
            else:
                promote = new_val_f1 >= champ_f1
                reason = f"new {new_val_f1:.4f} {'>=' if promote else '<'} champion {champ_f1:.4f}"
    if promote:
        client.set_registered_model_alias(name, CHAMPION, new_version)
    out["gate_decision"] = "promoted" if promote else "kept_champion"
    out["gate_reason"] = reason
    tags = {k: str(v) for k, v in out.items()}
    for k, v in tags.items():
        client.set_model_version_tag(name, new_version, k, v)
    if mlflow.active_run():
        mlflow.set_tags(tags)
    log.info("champion gate: %s (%s)", out["gate_decision"], reason)
    return out


# --- plots -----------------------------------------------------------------------------------------
def plot_all(result: TrainResult, out_dir, unlabelled_probs: Optional[np.ndarray] = None) -> list[str]:
    """Loss and F1 curves, per-genre F1 bars, predicted vs true genre frequency; returns PNG paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h = pd.DataFrame(result.history)
    paths = []

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(h.epoch, h.train_loss, label="train"); a.plot(h.epoch, h.val_loss, label="validation")
    a.set(title="BCE loss (pos-weighted)", xlabel="epoch"); a.legend()
    b.plot(h.epoch, h.train_macro_f1, label="train"); b.plot(h.epoch, h.val_macro_f1, label="validation")
    b.axvline(result.metrics["best_epoch"], color="grey", ls=":", label="kept epoch")
    b.set(title="macro-F1 (validation-tuned thresholds)", xlabel="epoch"); b.legend()
    paths.append(_save(fig, out / "curves.png"))

    pg = result.per_genre
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(pg) + 1.5))
    y = np.arange(len(pg))
    for k, (name, color) in enumerate([("classifier", "C0"), ("tfidf", "C1"), ("prior", "C7")]):
        ax.barh(y + (k - 1) * 0.27, pg[f"{name}_f1"].fillna(0), height=0.27, label=name, color=color)
    ax.set_yticks(y, pg.genre); ax.invert_yaxis()
    ax.set(title="test F1 per genre", xlabel="F1"); ax.legend()
    paths.append(_save(fig, out / "per_genre_f1.png"))

    te = result.split == "test"
    n_test = max(int(te.sum()), 1)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(pg) + 1.5))
    ax.barh(y - 0.2, pg.test_positives / n_test, height=0.4, label="true (test)")
    ax.barh(y + 0.2, pg.test_predicted_positives / n_test, height=0.4, label="predicted (test)")
    if unlabelled_probs is not None and len(unlabelled_probs):
        ax.scatter((unlabelled_probs >= result.thresholds).mean(0), y, color="k", marker="|", s=80,
                   label="predicted (unlabelled items)", zorder=3)
    ax.set_yticks(y, pg.genre); ax.invert_yaxis()
    ax.set(title="genre frequency: predicted vs true", xlabel="share of items"); ax.legend()
    paths.append(_save(fig, out / "genre_frequency.png"))
    return paths


def _save(fig, path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return str(path)


# --- the output table ------------------------------------------------------------------------------
def score_items(data: GenreData, P: np.ndarray) -> pd.DataFrame:
    """item_genre_scores rows, every item x genre. A labelled item keeps its labelled genres at 1.0
    (a label is not overruled) and gets the model's probability for the others; an unlabelled item
    gets the model's probabilities."""
    prob = np.where(data.Y > 0.5, 1.0, P.astype(np.float64))
    n, g = prob.shape
    return pd.DataFrame({
        "item_id": np.repeat(data.item_ids, g),
        "genre": np.tile(np.asarray(data.genres, dtype=object), n),
        "probability": prob.reshape(-1),
        "source": np.repeat(np.where(data.labelled, "labelled", "predicted"), g),
    })
