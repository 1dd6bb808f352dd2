"""Stage genre_weights: interactions_clean history -> user_genre_weights, item_genres, genre_vocab."""
import _bootstrap  # noqa: F401

from genre_lib.orchestration import jobrun


def main(argv=None) -> int:
    return jobrun.main("genre_weights", argv)


if __name__ == "__main__":
    raise SystemExit(main())
