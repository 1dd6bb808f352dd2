"""Tune the ranker's profile: an Optuna study on a validation split of a committed night (genre_tuning)."""
import _bootstrap  # noqa: F401

from genre_lib.evaluation import tuning


def main(argv=None) -> int:
    return tuning.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
