"""Stage embed_texts: items_clean -> item_embeddings, re-embedding only texts not seen before."""
import _bootstrap  # noqa: F401

from genre_lib.orchestration import jobrun


def main(argv=None) -> int:
    return jobrun.main("embed_texts", argv)


if __name__ == "__main__":
    raise SystemExit(main())
