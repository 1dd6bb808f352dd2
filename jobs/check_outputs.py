"""Stage check_outputs: tonight's recommendations against the contract and the trailing nights -> output_checks."""
import _bootstrap  # noqa: F401

from genre_lib.orchestration import jobrun


def main(argv=None) -> int:
    return jobrun.main("check_outputs", argv)


if __name__ == "__main__":
    raise SystemExit(main())
