"""Stage clean_interactions: raw logs + catalogue -> interactions_clean, interactions_quarantine, items_clean."""
import _bootstrap  # noqa: F401

from genre_lib.orchestration import jobrun


def main(argv=None) -> int:
    return jobrun.main("clean_interactions", argv)


if __name__ == "__main__":
    raise SystemExit(main())
