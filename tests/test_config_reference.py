"""docs/configuration.md is generated from the config models and stays in step with them; every key is
described; every GENRE_* environment variable the code reads is documented."""
import subprocess
import sys
import typing

from pydantic import BaseModel

from genre_lib.config import reference
from genre_lib.config.settings import PROJECT_ROOT, PipelineConfig

REGENERATE = "run `python -m genre_lib.config --reference`"


def _models(model=PipelineConfig, seen=None) -> list[type[BaseModel]]:
    """PipelineConfig and every model reachable from its fields (sections, list items, mapping values)."""
    seen = [] if seen is None else seen
    if model not in seen:
        seen.append(model)
        for info in model.model_fields.values():
            stack = [info.annotation]
            while stack:
                t = stack.pop()
                stack += typing.get_args(t)
                if isinstance(t, type) and issubclass(t, BaseModel):
                    _models(t, seen)
    return seen


def test_reference_is_up_to_date():
    doc = reference.DOC_PATH
    assert doc.is_file(), f"{doc.relative_to(PROJECT_ROOT)} is missing: {REGENERATE}"
    assert doc.read_text() == reference.reference(), f"{doc.relative_to(PROJECT_ROOT)} is stale: {REGENERATE}"


def test_check_mode_exit_code(tmp_path, monkeypatch):
    from genre_lib.config import __main__ as cli

    assert cli.main(["--check"]) == 0
    monkeypatch.setattr(cli, "DOC_PATH", tmp_path / "configuration.md")
    assert cli.main(["--check"]) == 1  # missing
    (tmp_path / "configuration.md").write_text(reference.reference() + "edited by hand\n")
    assert cli.main(["--check"]) == 1  # stale
    assert cli.main(["--reference"]) == 0 and cli.main(["--check"]) == 0


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "genre_lib.config", "--check"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_every_field_has_a_description():
    missing = [f"{m.__name__}.{name}" for m in _models() for name, info in m.model_fields.items()
               if not (info.description or "").strip()]
    assert not missing, f"fields without a description: {missing}"


def test_every_validator_states_its_rule():
    """The reference quotes each validator's docstring as the rule it enforces."""
    missing = [f"{m.__name__}.{name}" for m in _models()
               for kind in ("field_validators", "model_validators")
               for name, dec in getattr(m.__pydantic_decorators__, kind).items()
               if not (dec.func.__doc__ or "").strip()]
    assert not missing, f"validators without a docstring: {missing}"


def test_every_key_is_in_the_reference():
    text = reference.reference()
    keys = [r.key for name, info in PipelineConfig.model_fields.items()
            for r in reference.rows(info.annotation, f"{name}.", [], {})]
    assert len(keys) == len(set(keys)) > 100
    absent = [k for k in keys if f"| `{k}` |" not in text]
    assert not absent, absent


def test_every_genre_environment_variable_is_documented():
    documented = {e.name for envs in reference.ENV_VARS.values() for e in envs}
    read = reference.env_names()
    missing = {name: files for name, files in read.items() if name not in documented}
    assert not missing, (f"GENRE_* variables read by the code but not in genre_lib.config.reference.ENV_VARS "
                         f"(add each with its default, reader and effect, then {REGENERATE}): {missing}")
    for name in ("GENRE_PSEUDONYM_KEY", "GENRE_TUNING_STORAGE", "GENRE_ALLOWED_ROOTS", "GENRE_FAIL_STAGE"):
        assert name in read  # the scan sees the code


def test_documented_variables_still_exist():
    everywhere = reference.env_names(("genre_lib", "jobs", "dags", "bench", "tests", "Makefile", "docker", "configs"))
    stale = sorted({e.name for envs in reference.ENV_VARS.values() for e in envs} - set(everywhere))
    assert not stale, f"documented but mentioned nowhere any more: {stale}"
    assert not set(reference.NOT_ENV) & {e.name for envs in reference.ENV_VARS.values() for e in envs}


def test_config_modules_stay_small():
    big = {p.name: n for p in (PROJECT_ROOT / "genre_lib" / "config").glob("*.py")
           if (n := len(p.read_text().splitlines())) > 350}
    assert not big, f"modules over 350 lines: {big}"


def test_the_scan_finds_a_new_variable(tmp_path):
    (tmp_path / "job.py").write_text('import os\nos.environ.get("GENRE_NEW_KNOB", "1")\n'
                                     'AIRFLOW_CONN_GENRE_NOTIFY = 1\nGENRE_EPS = 1e-3\n')
    (tmp_path / "Makefile").write_text("run:\n\tGENRE_OTHER=$${GENRE_NEW_KNOB} true\n")
    assert reference.env_names(("job.py", "Makefile"), root=tmp_path) == {
        "GENRE_NEW_KNOB": ["job.py", "Makefile"], "GENRE_OTHER": ["Makefile"]}
