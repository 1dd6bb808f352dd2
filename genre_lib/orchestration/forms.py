"""The trigger forms of genre_nightly and genre_tuning (Airflow Params: a JSON schema the UI checks;
pipeline.resolve_run and tuning.resolve check the values again for the CLI and the REST API)."""
from __future__ import annotations

from airflow.sdk import Param

from genre_lib.lake.tables import STAGES


def nightly_params() -> dict[str, Param]:
    """Checked by the form (JSON schema) and again by pipeline.resolve_run (CLI and REST API)."""
    from genre_lib.orchestration.pipeline import profile_choices

    stages = list(STAGES)
    return {
        "run_date": Param(None, type=["null", "string"], format="date", title="Run date",
                          description="Night to process (YYYY-MM-DD); empty: the run's logical date."),
        "config": Param("configs/default.yaml", type="string", enum=profile_choices(), title="Config profile",
                        description="A YAML profile of configs/ (or configs/tuned/)."),
        "overrides": Param([], type="array", items={"type": "string"}, title="Overrides",
                           description="dotted.key=value lines, e.g. recommend.top_n=50"),
        "stages": Param(stages, type="array", items={"type": "string", "enum": stages}, examples=stages,
                        minItems=1, uniqueItems=True, title="Stages",
                        description="Run only these (e.g. recommend + evaluate to redo the tail); the others "
                                    "are skipped and their committed partitions are read as they are."),
        "full_refresh": Param(False, type="boolean", title="Re-embed every item",
                              description="encoder.full_refresh=true: ignore the embedding cache of earlier nights."),
    }


def tuning_params() -> dict[str, Param]:
    """genre_tuning's form; empty values keep the profile's `tuning.*`. Checked again by
    tuning.resolve (CLI and REST API)."""
    from genre_lib.orchestration.pipeline import profile_choices

    return {
        "config": Param("configs/default.yaml", type="string", enum=profile_choices(), title="Starting profile",
                        description="Its `tuning` section declares the search space; its values are the start."),
        "sampler": Param(None, type=["null", "string"], enum=[None, "tpe", "random"], title="Sampler",
                         description="tpe (Bayesian, Optuna's TPE) or random; empty: the profile's."),
        "n_trials": Param(None, type=["null", "integer"], minimum=1, title="Trials",
                          description="Trials of the study in all (a resumed study runs the rest); empty: the profile's."),
        "timeout_minutes": Param(None, type=["null", "number"], exclusiveMinimum=0, title="Timeout (minutes)",
                                 description="Stop starting trials after this long; empty: none."),
        "protocol": Param(None, type=["null", "string"], enum=[None, "temporal", "stratified"], title="Protocol",
                          description="How train/validation/test are split; empty: the profile's eval.protocol."),
        "metric": Param("ndcg@10", type="string", pattern="^(ndcg|precision|recall|map|hit_rate)@[1-9][0-9]*$",
                        title="Metric", description="Maximised on the validation split."),
        "study_name": Param(None, type=["null", "string"], title="Study name",
                            description="The same name resumes a study; empty: <profile>-<protocol>-<sampler>."),
        "promote": Param(False, type="boolean", title="Promote the best profile",
                         description="Write it to configs/tuned/<profile>-<date>.yaml, offered by the nightly's form."),
        "run_date": Param(None, type=["null", "string"], format="date", title="Night",
                          description="Tune on the lake history of this night; empty: the newest committed one."),
        "overrides": Param([], type="array", items={"type": "string"}, title="Overrides",
                           description="dotted.key=value lines applied to the starting profile"),
    }
