"""Stage evaluate: split the history (eval.protocol), fit on train only, compare the blend with its ablations -> evaluation."""
import _bootstrap  # noqa: F401

from genre_lib.orchestration import jobrun


def main(argv=None) -> int:
    return jobrun.main("evaluate", argv)


if __name__ == "__main__":
    raise SystemExit(main())
