"""Training the genre classifier (genre_lib/classifier/model.py): the loop over a frozen encoder's
embeddings, fine-tuning the encoder's top layers, and the baselines every model is compared with.
One experiment over them is experiment.py; the nightly stage is genre_lib/stages/train_classifier.py."""
from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from genre_lib.classifier.genre_data import GenreData
from genre_lib.classifier.model import FinetunedClassifier, GenreClassifier, longest_tokens, tokenize
from genre_lib.classifier.registry import FINETUNED
from genre_lib.classifier.thresholds import scores, tune_thresholds, tuned_macro_f1
from genre_lib.config.settings import ClassifierConfig, EncoderConfig

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
