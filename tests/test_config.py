import pytest

from genre_lib.config.settings import ConfigError, load_config, parse_run_date

DEFAULT = "configs/default.yaml"


def test_default_profile_and_required_keys():
    cfg = load_config(DEFAULT)
    assert cfg.data.format == "synthetic"
    assert cfg.recommend.top_n == 20
    assert cfg.lake_root.endswith("/lake")
    assert cfg.data_path.startswith("/")


def test_overrides_are_typed():
    cfg = load_config(DEFAULT, ["recommend.top_n=5", "genres.half_life_days=7.5", "genres.lookback_days=null",
                                "clean.events=[view, rate]"])
    assert cfg.recommend.top_n == 5 and cfg.genres.half_life_days == 7.5
    assert cfg.genres.lookback_days is None and cfg.clean.events == ["view", "rate"]


@pytest.mark.parametrize("override, field", [
    ("recommend.topn=3", "recommend.topn"),
    ("nope.x=1", "nope"),
    ("recommend.top_n=abc", "recommend.top_n"),
    ("recommend.top_n=0", "recommend.top_n"),
    ("data.format=excel", "data.format"),
    ("genres.event_weights={view: -1}", "genres.event_weights"),
    ("recommend.weights.cf=-2", "recommend.weights.cf"),
    ("genres.shrinkage=-1", "genres.shrinkage"),
    ("classifier.finetune_layers=-1", "classifier.finetune_layers"),
    ("classifier.finetune_lr=0", "classifier.finetune_lr"),
    ("classifier.finetune_on_cpu=maybe", "classifier.finetune_on_cpu"),
    ("spark.conf={spark.task.resource.gpu.amount: '1'}", "spark.conf"),
])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(DEFAULT, [override])


def test_unknown_key_in_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lake:\n  root: x\n  rooot: y\n")
    with pytest.raises(ConfigError, match=r"lake\.rooot: unknown key"):
        load_config(p)


def test_config_hash_changes_with_values():
    assert load_config(DEFAULT).hash() == load_config(DEFAULT).hash()
    assert load_config(DEFAULT).hash() != load_config(DEFAULT, ["recommend.top_n=7"]).hash()


@pytest.mark.parametrize("bad", ["2026-13-01", "22/11/2026", "", "yesterday"])
def test_run_date_is_validated(bad):
    with pytest.raises(ConfigError, match="run_date"):
        parse_run_date(bad)


def test_every_profile_loads():
    from genre_lib.config.settings import PROJECT_ROOT
    for profile in sorted((PROJECT_ROOT / "configs").glob("*.yaml")):
        load_config(profile)


def test_cluster_profile_carries_gpu_resources_to_spark():
    cfg = load_config("configs/cluster-gpu.yaml")
    assert cfg.encoder.engine == "spark" and not cfg.spark.master.startswith("local")
    assert cfg.spark.conf["spark.executor.resource.gpu.amount"] == "1"


def test_finetune_keys():
    cfg = load_config(DEFAULT, ["classifier.finetune_layers=2", "classifier.finetune_lr=3e-5",
                                "classifier.finetune_on_cpu=true"])
    assert (cfg.classifier.finetune_layers, cfg.classifier.finetune_lr, cfg.classifier.finetune_on_cpu) == (2, 3e-5, True)
    default = load_config(DEFAULT).classifier
    assert (default.finetune_layers, default.finetune_lr, default.finetune_on_cpu) == (0, 2e-5, False)
    # a fine-tuned model reads token ids: forcing the word branch on is refused, naming both keys
    with pytest.raises(ConfigError, match=r"classifier: .*word_branch: on .*finetune_layers > 0"):
        load_config(DEFAULT, ["classifier.finetune_layers=1", "classifier.word_branch=on"])
    assert load_config(DEFAULT, ["classifier.finetune_layers=1", "classifier.word_branch=auto"])
