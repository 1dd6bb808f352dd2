import re

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


@pytest.mark.parametrize("old, new", [("recommend.cf_reg", "recommend.cf.reg"),
                                      ("recommend.genre_scorer", "recommend.genre.scorer"),
                                      ("recommend.gamma", "recommend.genre.gamma"),
                                      ("recommend.pseudonymize_users", "recommend.privacy.pseudonymize_users"),
                                      ("recommend.engine", "recommend.execution.engine"),
                                      ("recommend.user_block_rows", "recommend.execution.user_block_rows")])
def test_a_moved_key_is_refused_naming_its_new_place(tmp_path, old, new):
    from genre_lib.config.settings import MOVED, config_field
    assert MOVED[old] == new
    message = re.escape(f"{old} moved to {new}")
    with pytest.raises(ConfigError, match=message):  # a --set override (even one that would be valid)
        load_config(DEFAULT, [f"{old}=1"])
    section, leaf = old.split(".")
    p = tmp_path / "old.yaml"
    p.write_text(f"{section}:\n  top_n: 5\n  {leaf}: null\n")  # a profile, the old key even when null
    with pytest.raises(ConfigError, match=message):
        load_config(p)
    p.write_text("ab:\n  salt: s\n  variants:\n    - {name: a, share: 0.5}\n"
                 f"    - {{name: b, share: 0.5, overrides: {{{old}: 1}}}}\n")
    with pytest.raises(ConfigError, match=message):  # an A/B variant's overrides
        load_config(p)
    with pytest.raises(ConfigError, match=re.escape("tuning.space.") + message):  # a tuning space key
        load_config(None, [f"tuning.space={{{old}: {{choices: [1]}}}}"])
    config_field(new)  # the new key exists


def test_every_moved_key_names_an_existing_key():
    from genre_lib.config.settings import MOVED, config_field
    assert len(set(MOVED.values())) == len(MOVED)
    for old, new in MOVED.items():
        config_field(new)
        with pytest.raises(ValueError, match="no such key|moved to"):
            config_field(old)


def test_recommend_sub_sections_by_role():
    rc = load_config(DEFAULT, ["recommend.cf.reg=50", "recommend.genre.scorer=share",
                               "recommend.privacy.pseudonym_key_env=K", "recommend.execution.block_users=7"]).recommend
    assert (rc.cf.reg, rc.genre.scorer, rc.privacy.pseudonym_key_env, rc.execution.block_users) == (50, "share", "K", 7)
    assert list(type(rc).model_fields) == ["top_n", "weights", "genre", "cf", "privacy", "execution"]
