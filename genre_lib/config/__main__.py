"""python -m genre_lib.config --reference: write docs/configuration.md from the code;
--check: exit 1 when it is stale (nothing written)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from genre_lib.config.reference import COMMAND, DOC_PATH, reference
from genre_lib.config.settings import PROJECT_ROOT


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genre_lib.config", description=__doc__.split(";")[0])
    p.add_argument("--reference", action="store_true", help="write docs/configuration.md")
    p.add_argument("--check", action="store_true", help="exit 1 when it differs from the code; write nothing")
    args = p.parse_args(argv)
    if not (args.reference or args.check):
        p.error("give --reference or --check")
    text = reference()
    where = DOC_PATH.relative_to(PROJECT_ROOT) if DOC_PATH.is_relative_to(PROJECT_ROOT) else DOC_PATH
    if args.check:
        if not DOC_PATH.is_file() or DOC_PATH.read_text() != text:
            print(f"{where} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{where} is up to date")
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)
    print(f"wrote {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
