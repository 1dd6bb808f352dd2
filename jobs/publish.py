"""Stage publish: the quality gate, then the night into the serving store (atomic switch) and a "recommendations ready" event -> publish_log."""
import _bootstrap  # noqa: F401

from genre_lib.orchestration import jobrun


def main(argv=None) -> int:
    return jobrun.main("publish", argv)


if __name__ == "__main__":
    raise SystemExit(main())
