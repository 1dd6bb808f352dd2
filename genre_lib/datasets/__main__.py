"""`python -m genre_lib.datasets --config configs/default.yaml`: write the raw data set of a profile
whose source generates one (synthetic) unless it is already there (--force rewrites it)."""
import argparse

from genre_lib.config.settings import load_config
from genre_lib.datasets.source import source_for

p = argparse.ArgumentParser()
p.add_argument("--config", default="configs/default.yaml")
p.add_argument("--set", dest="overrides", action="append", default=[])
p.add_argument("--force", action="store_true")
args = p.parse_args()
print(source_for(load_config(args.config, args.overrides)).prepare(args.force))
