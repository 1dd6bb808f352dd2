"""Tuning: an Optuna study over the profile's `tuning.space` (the genre_tuning DAG, jobs/tune.py).

The night's history is split by the protocol into train and test, and train again, by the same
protocol, into inner-train and validation. A trial fits the ranker on inner-train (genre weights by
genres.py's numpy twin, as the evaluate stage refits) and scores `tuning.metric` on validation;
with pruning, it is scored first on a seeded half of the validation users and stopped there when
that is below the median of earlier trials at the same point. The best trial's profile is fitted
on the whole train split and scored on test once, reported apart from the search.

The study lives in an Optuna RDB storage (SQLite in the repo by default), so a rerun with the same
study name resumes it up to `n_trials`. MLflow (experiment `tuning.experiment`): one parent run per
study, found again on resume; one nested run per trial; the best profile as YAML, its diff against
the starting profile, and Optuna's optimisation-history and parameter-importance plots.
"""
from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
import yaml

from genre_lib.config.settings import (
    PROJECT_ROOT,
    ConfigError,
    PipelineConfig,
    load_config,
    parse_run_date,
    resolve_path,
    set_values,
    with_values,
)

log = logging.getLogger("genre.tuning")
TUNED_DIR = PROJECT_ROOT / "configs" / "tuned"


def study_name(cfg: PipelineConfig, profile: str) -> str:
    return cfg.tuning.study_name or f"{Path(profile).stem}-{protocol(cfg)}-{cfg.tuning.sampler}"


def protocol(cfg: PipelineConfig) -> str:
    p = cfg.tuning.protocol or cfg.eval.protocol
    if p not in ("temporal", "stratified"):
        raise ConfigError(f"tuning.protocol: {p!r} can't be tuned on (cold_items retrains the classifier per "
                          "split); set tuning.protocol to temporal or stratified")
    return p


def storage_url(cfg: PipelineConfig) -> str:
    """tuning.storage, else $GENRE_TUNING_STORAGE (the production profile's Postgres), else SQLite."""
    if cfg.tuning.storage or os.environ.get("GENRE_TUNING_STORAGE"):
        return cfg.tuning.storage or os.environ["GENRE_TUNING_STORAGE"]
    path = PROJECT_ROOT / "tuning" / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def suggest(trial, space: dict) -> dict:
    """One value per space key from the trial (Optuna's distributions; names are the dotted keys)."""
    out = {}
    for key, spec in space.items():
        if spec.choices is not None:
            out[key] = trial.suggest_categorical(key, list(spec.choices))
        else:
            out[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log, step=spec.step)
    return out


# --------------------------------------------------------------------------------------------
# the objective
# --------------------------------------------------------------------------------------------
@dataclass
class Problem:
    train: pd.DataFrame       # the protocol's training split
    test: pd.DataFrame        # its test split (new items only): scored once, for the best trial
    inner: pd.DataFrame       # train split again by the protocol: what trials fit on
    val: pd.DataFrame         # ... and what they are scored on
    catalogue: object
    run_date: dt.date


def carve(history: pd.DataFrame, catalogue, cfg: PipelineConfig, run_date: dt.date) -> Problem:
    from genre_lib.protocol.splits import new_items, split

    p, ec = protocol(cfg), cfg.eval
    train, test = split(history, p, ec.holdout_share, ec.seed)
    inner, val = split(train, p, ec.holdout_share, ec.seed)
    return Problem(train=train, test=new_items(test, train), inner=inner, val=new_items(val, inner),
                   catalogue=catalogue, run_date=run_date)


def _k(cfg: PipelineConfig) -> int:
    """The cut-off of tuning.metric (`ndcg@10` -> 10)."""
    return int(cfg.tuning.metric.partition("@")[2])


def score(train: pd.DataFrame, truth: pd.DataFrame, problem: Problem, cfg: PipelineConfig,
          stop: Optional[Callable[[dict], bool]] = None) -> list[dict]:
    """Fit on `train`, rank the users of `truth`, ranking metrics at the tuning metric's k: for all
    users; with `stop`, for a seeded half first, and for all only when stop(half's metrics) is false."""
    from genre_lib.protocol.metrics import ranking_metrics
    from genre_lib.ranking import blend
    from genre_lib.ranking.model import fit_split

    k = _k(cfg)
    model = fit_split(train, problem.catalogue, cfg, problem.run_date)
    users = np.flatnonzero(pd.Index(model.user_ids).isin(truth["user_id"].unique()))
    rng = np.random.default_rng(cfg.tuning.seed)
    steps = [np.sort(rng.permutation(users)[:max(1, len(users) // 2)]), users] if stop else [users]
    out = []
    for rows in steps:
        top = blend.recommend(model, cfg.recommend.weights, k, cfg.recommend.execution.block_users, users=rows)
        out.append(ranking_metrics(truth[truth["user_id"].isin(set(model.user_ids[rows]))], top.frame(model), k))
        if stop and len(out) == 1 and stop(out[0]):
            break
    return out


def _numeric(m: dict, prefix: str) -> dict:
    return {f"{prefix}{k}".replace("@", "_at_"): float(v) for k, v in m.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------
def run_study(cfg: PipelineConfig, profile: str, problem: Problem, airflow_run_id: Optional[str] = None) -> dict:
    """Run (or resume) the study; log it to MLflow; score the best trial on test; promote on request.
    Returns the summary (also the parent run's summary.json)."""
    import mlflow
    import optuna

    from genre_lib.orchestration.tracking import experiment_id

    tc, name = cfg.tuning, study_name(cfg, profile)
    metric = cfg.tuning.metric
    study = optuna.create_study(storage=storage_url(cfg), study_name=name, direction="maximize", load_if_exists=True)
    # a resumed study draws on: a sampler seeded as on the first run would repeat its trials
    seed = tc.seed + len(study.trials)
    study.sampler = (optuna.samplers.TPESampler(seed=seed) if tc.sampler == "tpe"
                     else optuna.samplers.RandomSampler(seed=seed))
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=5) if tc.pruning else optuna.pruners.NopPruner()
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    remaining = max(0, tc.n_trials - len(done))

    exp = experiment_id(cfg, tc.experiment)
    mlflow.set_experiment(experiment_id=exp)  # resuming a run needs its experiment active
    parent = mlflow.search_runs([exp], filter_string=f"tags.study_name = '{name}' and tags.stage = 'tuning'",
                                max_results=1, output_format="list")
    tags = {"stage": "tuning", "study_name": name, "sampler": tc.sampler, "profile": profile,
            "protocol": protocol(cfg), "metric": metric, "airflow_run_id": airflow_run_id or "manual"}
    run_kwargs = {"run_id": parent[0].info.run_id} if parent else {"experiment_id": exp, "run_name": f"study {name}"}
    with mlflow.start_run(**run_kwargs) as run:
        mlflow.set_tags(tags)
        if not parent:
            mlflow.log_params({"n_trials": tc.n_trials, "sampler": tc.sampler, "seed": tc.seed, "pruning": tc.pruning,
                               "protocol": protocol(cfg), "metric": metric, "storage": storage_url(cfg).split("://")[0],
                               "inner_rows": len(problem.inner), "val_rows": len(problem.val)})
            mlflow.log_dict({k: v.model_dump(exclude_none=True) for k, v in tc.space.items()}, "space.json")
            start = score(problem.inner, problem.val, problem, cfg)[0]
            mlflow.log_metrics(_numeric(start, "start_profile.val."))  # the profile as given, for reference
        log.info("study %s: %d trials done, %d to run", name, len(done), remaining)

        def objective(trial):
            params = suggest(trial, tc.space)
            c = with_values(cfg, params)

            def stop(half: dict) -> bool:  # the median pruner's verdict on half of the validation users
                trial.report(half[metric], 0)
                return trial.should_prune()

            with mlflow.start_run(nested=True, experiment_id=exp, run_name=f"trial {trial.number}",
                                  tags={"stage": "tuning-trial", "study_name": name, "trial": str(trial.number)}):
                mlflow.log_params({k: str(v) for k, v in params.items()})
                steps = score(problem.inner, problem.val, problem, c, stop=stop if tc.pruning else None)
                pruned, result = len(steps) == 1 and tc.pruning, steps[-1]
                mlflow.log_metrics(_numeric(result, "val."))
                mlflow.set_tag("state", "pruned" if pruned else "complete")
            if pruned:
                raise optuna.TrialPruned()
            return result[metric]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if remaining:
                # a setting the ranker can't fit (e.g. a singular system) fails its trial, not the study
                study.optimize(objective, n_trials=remaining, catch=(ValueError, ArithmeticError, np.linalg.LinAlgError),
                               timeout=tc.timeout_minutes * 60 if tc.timeout_minutes else None)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise RuntimeError(f"study {name}: no trial completed")
        best = study.best_trial
        best_cfg = with_values(cfg, best.params)
        test = score(problem.train, problem.test, problem, best_cfg)[0]  # the only look at the test split
        mlflow.log_metrics({**_numeric(test, "best.test."), f"best.val.{metric}".replace("@", "_at_"): best.value,
                            "trials_complete": len(complete),
                            "trials_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)})
        text, diff = profile_text(profile, best.params, name, metric, best.value)
        mlflow.log_text(text, "best_profile.yaml")
        mlflow.log_text(diff, "best_profile.diff")
        with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            _log_plots(study)
        promoted = promote(profile, text) if tc.promote else None
        summary = {"study": name, "sampler": tc.sampler, "trials": len(study.trials), "complete": len(complete),
                   "best_trial": best.number, "best_params": best.params, f"val_{metric}": best.value,
                   "test": test, "promoted": promoted, "mlflow_run_id": run.info.run_id}
        mlflow.log_dict(summary, "summary.json")
        mlflow.set_tag("promoted", promoted or "no")
    return summary


def profile_text(profile: str, params: dict, name: str, metric: str, value: float) -> tuple[str, str]:
    """The starting profile (its YAML mapping) with the best params set, and a diff against it."""
    path = Path(resolve_path(profile))
    raw = yaml.safe_load(path.read_text()) or {}
    before = yaml.safe_dump(raw, sort_keys=False)
    tuned = json.loads(json.dumps(raw, default=str))
    set_values(tuned, params)
    after = yaml.safe_dump(tuned, sort_keys=False)
    header = (f"# Tuned by study {name} on {dt.date.today()} from {profile}: best validation {metric} "
              f"{value:.4f}.\n# Inherits the starting profile's clean.min_ts and data section: check them "
              "before pointing another data set at it.\n")
    diff = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                        fromfile=profile, tofile="best_profile.yaml"))
    return header + after, diff


def promote(profile: str, text: str) -> str:
    """Write configs/tuned/<profile>-<date>.yaml (a new file: -2, -3 ... if taken); its repo path."""
    TUNED_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(profile).stem}-{dt.date.today()}"
    path, n = TUNED_DIR / f"{stem}.yaml", 1
    while path.exists():
        n += 1
        path = TUNED_DIR / f"{stem}-{n}.yaml"
    PipelineConfig.model_validate(yaml.safe_load(text))  # a promoted profile must load
    path.write_text(text)
    return path.relative_to(PROJECT_ROOT).as_posix()


def _log_plots(study) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from optuna.visualization import matplotlib as ovm

    for fname, plot in (("optimization_history.png", ovm.plot_optimization_history),
                        ("param_importances.png", ovm.plot_param_importances)):
        try:
            ax = plot(study)
        except (ValueError, RuntimeError) as e:  # importances need >= 2 complete trials that differ
            mlflow.log_text(f"{fname}: not drawn ({e})\n", fname.replace(".png", ".txt"))
            continue
        fig = (ax if not hasattr(ax, "__len__") else ax.flat[0]).figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        mlflow.log_figure(fig, f"plots/{fname}")
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------
def night_inputs(cfg: PipelineConfig, run_date: Optional[str]) -> tuple[pd.DataFrame, object, dt.date]:
    """History and catalogue of a committed night (default: the newest clean night in the lake)."""
    from genre_lib.datasets.source import source_for
    from genre_lib.lake.catalogue import Catalogue
    from genre_lib.lake.history import read_history_pandas
    from genre_lib.lake.storage import Lake

    lake = Lake(cfg.lake_root)
    nights = lake.committed("interactions_clean")
    if run_date is None:
        if not nights:
            raise ConfigError(f"run_date: no committed interactions_clean in {cfg.lake_root}; run genre_nightly first")
        run_date = nights[-1]
    day = parse_run_date(run_date)
    history = read_history_pandas(lake, day, cfg.genres.lookback_days)
    if history.empty:
        raise ConfigError(f"run_date: no clean interactions on or before {day} in {cfg.lake_root}")
    if protocol(cfg) == "stratified":
        history = source_for(cfg).source_order(history)  # a published split's row order
    return history, Catalogue.from_lake(lake, day.isoformat()), day


FORM_FIELDS = ("sampler", "n_trials", "timeout_minutes", "protocol", "metric", "study_name", "promote")


def resolve(params: dict, run_id: str) -> dict:
    """genre_tuning's form values (checked again: the CLI and the REST API can pass anything) ->
    the tune job's arguments. ConfigError names the field."""
    import shlex

    from genre_lib.orchestration.pipeline import form_profile

    config, overrides = form_profile(params)
    for name in FORM_FIELDS:
        value = params.get(name)
        if value is not None and value != "":
            overrides = [*overrides, f"tuning.{name}={json.dumps(value) if isinstance(value, bool) else value}"]
    cfg = check(config, overrides)
    args = ["--config", config, "--run-id", run_id]
    if params.get("run_date"):
        args += ["--run-date", parse_run_date(params["run_date"]).isoformat()]
    for o in overrides:
        args += ["--set", o]
    return {"args": args, "argline": shlex.join(args), "study": study_name(cfg, config),
            "n_trials": cfg.tuning.n_trials, "sampler": cfg.tuning.sampler}


def check(config: str, overrides: list[str]) -> PipelineConfig:
    """Everything refusable before a trial starts: the profile, the overrides, the search space
    (keys, ranges, every end and choice valid for its key), the protocol."""
    cfg = load_config(config, overrides)
    protocol(cfg)
    return cfg


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description="Tune the ranker's profile with an Optuna study")
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--run-date", default=None, help="the night whose lake history to tune on (default: newest)")
    p.add_argument("--run-id", default=None, help="the Airflow run id (MLflow tag)")
    args = p.parse_args(argv)
    try:
        cfg = check(args.config, args.overrides)
        history, catalogue, day = night_inputs(cfg, args.run_date)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = run_study(cfg, args.config, carve(history, catalogue, cfg, day), args.run_id)
    print(json.dumps(summary, default=str, indent=1))
    return 0
