"""Stage check_inputs: tonight's inputs against the contract and the trailing nights -> input_checks."""
import _bootstrap  # noqa: F401

from genre_lib.orchestration import jobrun


def main(argv=None) -> int:
    return jobrun.main("check_inputs", argv)


if __name__ == "__main__":
    raise SystemExit(main())
