"""Stage train_classifier: items_clean + item_embeddings -> genre classifier (MLflow registry) -> item_genre_scores."""
import _bootstrap  # noqa: F401

from genre_lib.orchestration import jobrun


def main(argv=None) -> int:
    return jobrun.main("train_classifier", argv)


if __name__ == "__main__":
    raise SystemExit(main())
