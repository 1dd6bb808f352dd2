"""Stage train_classifier: items_clean + item_embeddings -> genre classifier (MLflow registry) -> item_genre_scores."""
import _bootstrap  # noqa: F401

from genre_lib import jobrun


def main(argv=None) -> int:
    return jobrun.main("train_classifier", "genre_lib.training", argv)


if __name__ == "__main__":
    raise SystemExit(main())
