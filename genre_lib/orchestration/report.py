"""`python -m genre_lib.orchestration.report --config P --run-date D`: where tonight's tables are and how to look."""
import argparse

from genre_lib.config.settings import load_config
from genre_lib.lake.storage import Lake
from genre_lib.lake.tables import TABLES
from genre_lib.orchestration.tracking import tracking_uri

p = argparse.ArgumentParser()
p.add_argument("--config", default="configs/default.yaml")
p.add_argument("--run-date", required=True)
p.add_argument("--set", dest="overrides", action="append", default=[])
args = p.parse_args()
cfg = load_config(args.config, args.overrides)
lake = Lake(cfg.lake_root)
print(f"\ngenre_nightly {args.run_date}: tables under {cfg.lake_root}")
missing = []
for t in TABLES:
    if args.run_date in lake.committed(t):
        print(f"  {t:<26} ds={args.run_date}  {lake.manifest(t, args.run_date)['row_count']:>9} rows")
    else:
        missing.append(t)
        print(f"  {t:<26} NOT COMMITTED for ds={args.run_date}")
if args.run_date in lake.committed("evaluation"):
    print(f"  evaluation report: {lake.files('evaluation', args.run_date)[0]}")
print(f"\nMLflow runs: {tracking_uri(cfg)} (experiment {cfg.mlflow.experiment})")
print("  open the MLflow UI:  make mlflow-ui   -> http://127.0.0.1:5000")
print("  open the Airflow UI: make airflow     -> http://127.0.0.1:8080 (login in airflow_home/simple_auth_manager_passwords.json.generated)")
raise SystemExit(1 if missing else 0)
