"""`python -m genre_lib.datasets --config configs/default.yaml`: write the synthetic raw data set of a
profile unless it is already there (use --force to rewrite it)."""
import argparse
import shutil
from pathlib import Path

from genre_lib.config import load_config
from genre_lib.datasets import synthetic

p = argparse.ArgumentParser()
p.add_argument("--config", default="configs/default.yaml")
p.add_argument("--set", dest="overrides", action="append", default=[])
p.add_argument("--force", action="store_true")
args = p.parse_args()
cfg = load_config(args.config, args.overrides)
path = Path(cfg.data_path)
if cfg.data.format != "synthetic":
    print(f"data.format is {cfg.data.format}: nothing to generate")
elif (path / "items.jsonl").exists() and not args.force:
    print(f"synthetic data already at {path}")
else:
    if path.exists():
        shutil.rmtree(path)
    print(f"generating synthetic data at {path}: {synthetic.generate(cfg.data.synthetic, path)}")
