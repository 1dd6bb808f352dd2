"""Stage recommend: interaction history + catalogue tables -> recommendations (top N per user, explained)."""
import _bootstrap  # noqa: F401

from genre_lib.orchestration import jobrun


def main(argv=None) -> int:
    return jobrun.main("recommend", argv)


if __name__ == "__main__":
    raise SystemExit(main())
