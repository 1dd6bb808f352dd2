"""`python -m genre_lib.serve --config configs/default.yaml --host 127.0.0.1 --port 8000`: the read
API (genre_lib.serve.api) over the store of the profile's `publish` section, under uvicorn."""
from __future__ import annotations

import argparse
import os
import sys

from genre_lib.config.settings import ConfigError, load_config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m genre_lib.serve", description=__doc__)
    p.add_argument("--config", default="configs/default.yaml", help="YAML profile")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set publish.store=redis (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    p.add_argument("--no-access-log", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    common = dict(host=args.host, port=args.port, log_level=args.log_level, access_log=not args.no_access_log)
    if args.workers > 1:  # each worker process builds its own app from the same profile
        os.environ["GENRE_SERVE_CONFIG"] = args.config or ""
        os.environ["GENRE_SERVE_SET"] = "\n".join(args.overrides)
        uvicorn.run("genre_lib.serve.api:app_from_env", factory=True, workers=args.workers, **common)
        return 0
    from genre_lib.serve.api import ApiSettings, create_app
    from genre_lib.serve.store import store_for

    app = create_app(lambda: store_for(cfg), ApiSettings(pseudonym_key_env=cfg.recommend.privacy.pseudonym_key_env))
    uvicorn.run(app, **common)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
