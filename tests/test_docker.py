"""docker/ checked statically: there is no Docker engine on the development machine and no image can
be pulled, so nothing here builds or starts a container. The compose file is parsed with yaml and
interpolated with docker/.env.example the way compose does it; the Dockerfile and .dockerignore are
read as text. `docker compose config` is run too where the compose plugin exists (skipped otherwise).
Fast, no network."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
WORKDIR = "/opt/genre"  # the image's project root (Dockerfile WORKDIR)

SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|PSEUDONYM_KEY|_KEY$")
# $$ (a literal $), ${NAME}, ${NAME<op><word>} with op in :- - :? ? :+ +, $NAME
VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
REF_ONLY = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}$")


# ---------------------------------------------------------------- helpers

def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            out[key.strip()] = value.strip()
    return out


class MissingVariable(Exception):
    pass


def interpolate(s: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${V}, ${V:-d}, ${V-d}, ${V:?e}, ${V?e}, ${V:+a}, ${V+a}, $V, $$."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, word = m.group(1) or m.group(4), m.group(2), m.group(3) or ""
        is_set, value = name in env, env.get(name, "")
        if op in (":-", "-"):
            return value if (value if op == ":-" else is_set) else word
        if op in (":?", "?"):
            if not (value if op == ":?" else is_set):
                raise MissingVariable(f"{name}: {word}")
            return value
        if op in (":+", "+"):
            return word if (value if op == ":+" else is_set) else ""
        return value
    return VAR.sub(sub, s)


def resolve(obj, env: dict[str, str]):
    if isinstance(obj, str):
        return interpolate(obj, env)
    if isinstance(obj, list):
        return [resolve(x, env) for x in obj]
    if isinstance(obj, dict):
        return {resolve(k, env): resolve(v, env) for k, v in obj.items()}
    return obj


def strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, list):
        for x in obj:
            yield from strings(x)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from strings(k)
            yield from strings(v)


def variables(obj) -> set[str]:
    return {m.group(1) or m.group(4) for s in strings(obj) for m in VAR.finditer(s) if m.group(0) != "$$"}


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(svc: dict) -> list[str]:
    cmd = svc.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def arg(cmd: list[str], flag: str) -> str:
    assert flag in cmd, f"{flag} missing from {cmd}"
    return cmd[cmd.index(flag) + 1]


def is_airflow(svc: dict) -> bool:
    cmd = command(svc)
    return cmd[:1] == ["airflow"] or (cmd[:2] == ["bash", "-c"] and cmd[2].startswith("airflow "))


def is_celery_worker(svc: dict) -> bool:
    return command(svc)[:3] == ["airflow", "celery", "worker"]


def spark_role(svc: dict) -> str | None:
    cmd = command(svc)
    return cmd[1].rsplit(".", 1)[-1] if cmd[:1] == ["spark-class"] and len(cmd) > 1 else None


def mounts(svc: dict) -> dict[str, str]:
    """target -> source of a service's volumes (short syntax, or long syntax mappings)."""
    out = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out[v["target"]] = v.get("source", "")
        else:
            parts = v.split(":")
            out[parts[1]] = parts[0]
    return out


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def shell_commands(script: str) -> list[list[str]]:
    lex = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    cmds, cur = [], []
    for tok in lex:
        if tok and set(tok) <= set(";&|"):
            cmds.append(cur)
            cur = []
        else:
            cur.append(tok)
    return [c for c in cmds + [cur] if c]


PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(\[[^\]]*\])?\s*(==|>=|<=|~=|!=|===|<|>)")
REQ_FILE = re.compile(r"^requirements[\w\-]*\.txt$")
VALUE_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host"}


def pip_install_problems(run_script: str) -> list[str]:
    """What in a RUN script's `pip install` commands is not `-r requirements*.txt` (or an option)."""
    problems = []
    cmds = shell_commands(run_script)
    assigned = {}
    for cmd in cmds:
        for tok in cmd:
            m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", tok, re.S)
            if m:
                assigned.setdefault(m.group(1), []).append(m.group(2))
    for cmd in cmds:
        for i in range(len(cmd) - 1):
            if re.search(r"(^|/)pip3?$", cmd[i]) and cmd[i + 1] == "install":
                args = cmd[i + 2:]
                break
        else:
            continue
        expanded = []
        for tok in args:
            m = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", tok)
            if m and m.group(1) in assigned:  # e.g. $extra: every value it is given, word-split
                for value in assigned[m.group(1)]:
                    expanded += value.split()
            else:
                expanded.append(tok)
        j = 0
        while j < len(expanded):
            tok = expanded[j]
            if tok in ("-r", "--requirement", "-c", "--constraint"):
                if j + 1 >= len(expanded) or not REQ_FILE.match(expanded[j + 1]):
                    problems.append(f"{tok} {expanded[j + 1:j + 2]}: not a requirements*.txt")
                j += 2
            elif tok in VALUE_OPTIONS:
                j += 2
            elif tok.startswith("-"):
                if tok.startswith(("--requirement=", "-r=")) and not REQ_FILE.match(tok.split("=", 1)[1]):
                    problems.append(f"{tok}: not a requirements*.txt")
                j += 1
            else:
                problems.append(f"inline requirement {tok!r}")
                j += 1
    return problems


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern]]:
    """.dockerignore lines as (negated, regex), with Docker's matching: * and ? within a path
    element, ** across elements, patterns anchored at the context root, a match on a folder
    covering all below it, the last matching line winning."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rx, i = "", 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        out.append((neg, re.compile(rx)))
    return out


def ignored(path: str, patterns) -> bool:
    parts = path.split("/")
    result = False
    for neg, rx in patterns:
        if any(rx.fullmatch("/".join(parts[:k])) for k in range(1, len(parts) + 1)):
            result = not neg
    return result


def literal_secrets(text: str) -> list[str]:
    """Lines that give a secret-named key (KEY: v, KEY=v, - KEY=v) a value that is not one
    ${VAR} reference, or a ${VAR:-default} reference whose default is a literal."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("#"):
            continue
        for m in re.finditer(r"\b([A-Z][A-Z0-9_]*)\s*[:=]\s*(\S[^#\n]*)", line):
            key, value = m.group(1), m.group(2).strip().strip("'\"")
            if not SECRET_NAME.search(key) or not value:
                continue
            ref = REF_ONLY.match(value)
            if not ref or (ref.group(2) in (":-", "-", ":+", "+") and ref.group(3)):
                found.append(f"line {n}: {line.strip()}")
        for m in re.finditer(r"://[^/\s:@]+:([^@\s/]+)@", line):
            if not REF_ONLY.match(m.group(1)):
                found.append(f"line {n}: password in URL: {line.strip()}")
    return found


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw, example_env) -> dict:
    """The compose file as compose sees it with docker/.env.example as its env file."""
    return resolve(raw, example_env)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


# ---------------------------------------------------------------- files

def test_expected_services(services):
    expected = {"postgres", "redis", "mlflow", "airflow-init", "airflow-api", "airflow-scheduler",
                "airflow-dag-processor", "airflow-worker", "airflow-worker-gpu", "spark-master",
                "spark-worker", "spark-worker-gpu"}
    assert expected <= set(services), f"missing services: {expected - set(services)}"
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if name.startswith("airflow-"):
            assert is_airflow(svc), f"{name}: command {command(svc)} is not an airflow command"


def test_referenced_files_exist(services, dockerfile):
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE, name
        for target, source in mounts(svc).items():
            if source.startswith((".", "/")):  # a bind mount, relative to the compose file's folder
                assert (DOCKER / source).exists(), f"{name}: {source} -> {target} does not exist"
    context = ROOT  # compose's build context ..
    for word, args in dockerfile:
        if word in ("COPY", "ADD"):
            srcs = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            for src in srcs:
                assert (context / src).exists(), f"Dockerfile {word} {src}: not in the build context"
        if word == "RUN":
            for ref in re.findall(r"\b(docker/[\w.\-/]+)", args):
                assert (context / ref).is_file(), f"Dockerfile RUN uses {ref}, which does not exist"


def test_init_script_mounted_and_valid(services):
    init = {t: s for t, s in mounts(services["postgres"]).items() if t.startswith("/docker-entrypoint-initdb.d/")}
    assert init, "postgres mounts no init script into /docker-entrypoint-initdb.d"
    for target, source in init.items():
        path = DOCKER / source
        assert path.is_file() and target.endswith((".sh", ".sql")), (source, target)
        if target.endswith(".sh"):
            assert path.read_text().startswith("#!"), f"{source}: no shebang"
            subprocess.run(["bash", "-n", str(path)], check=True)
            text = path.read_text()
            for var in ("AIRFLOW_DB", "MLFLOW_DB", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD"):
                assert var in text, f"{source} does not use {var}"
            assert "CREATE DATABASE" in text


def test_gpu_discovery_script(tmp_path):
    """Spark's discovery JSON from a fake nvidia-smi that reports two GPUs."""
    script = DOCKER / "spark-gpu-discovery.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    fake.chmod(0o755)
    out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}).stdout
    assert json.loads(out) == {"name": "gpu", "addresses": ["0", "1"]}


# ---------------------------------------------------------------- variables and secrets

def test_every_compose_variable_is_in_env_example(raw, example_env):
    used = variables(raw)
    assert used, "compose.yaml uses no variables at all"
    assert not used - set(example_env), f"used by compose.yaml, missing from docker/.env.example: {used - set(example_env)}"
    assert not set(example_env) - used, f"in docker/.env.example, unused by compose.yaml: {set(example_env) - used}"


def test_env_example_has_placeholders_only(example_env):
    for key, value in example_env.items():
        if SECRET_NAME.search(key):
            assert value == "" or value.startswith("change-me"), f"{key}: not a placeholder: {value!r}"


def test_secrets_are_required_references(raw, example_env):
    secrets = {v for v in variables(raw) if SECRET_NAME.search(v)}
    assert {"POSTGRES_PASSWORD", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"} <= secrets
    text = COMPOSE.read_text()
    for name in secrets - {"GENRE_PSEUDONYM_KEY"}:  # optional: only with recommend.privacy.pseudonymize_users
        refs = re.findall(r"\$\{" + name + r"([^A-Za-z0-9_][^}]*)?\}", text)
        assert refs and all(r.startswith(":?") for r in refs), f"{name}: every use must be ${{{name}:?...}}"
        with pytest.raises(MissingVariable):  # compose fails loudly when it is unset
            resolve(raw, {k: v for k, v in example_env.items() if k != name})


def test_no_literal_secrets():
    for path in (COMPOSE, DOCKERFILE):
        assert not literal_secrets(path.read_text()), f"{path.name}: {literal_secrets(path.read_text())}"
    # the checker itself finds what it must
    assert literal_secrets("  POSTGRES_PASSWORD: hunter2\n")
    assert literal_secrets("  AIRFLOW__API_AUTH__JWT_SECRET: ${JWT:-abc}\n")
    assert literal_secrets("      - AIRFLOW__CORE__FERNET_KEY=abc\n")
    assert literal_secrets("  X: postgresql://u:pw@postgres/db\n")
    assert not literal_secrets("  PGPASSWORD: ${AIRFLOW_DB_PASSWORD:?set it}\n")


# ---------------------------------------------------------------- Dockerfile and .dockerignore

def test_dockerfile_installs_only_requirement_files(dockerfile):
    runs = [args for word, args in dockerfile if word == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip3?\s+install\b", r)]
    assert installs, "the Dockerfile installs nothing with pip"
    for script in installs:
        assert not pip_install_problems(script), pip_install_problems(script)
    assert any("requirements-prod.txt" in r for r in installs), "requirements-prod.txt is not installed"
    assert "-r requirements.txt" in (ROOT / "requirements-prod.txt").read_text()
    copied = " ".join(args for word, args in dockerfile if word == "COPY")
    assert "requirements.txt" in copied and "requirements-prod.txt" in copied
    body = "\n".join(args for word, args in dockerfile)
    assert not re.search(r"[A-Za-z0-9_\-\]]==\d", body), "a pinned version in the Dockerfile"
    # the checker itself finds what it must
    assert pip_install_problems("pip install -r requirements.txt psycopg2-binary==2.9.11")
    assert pip_install_problems('pip install --no-cache-dir "celery[redis]==5.5.3"')
    assert pip_install_problems("x='flower'; pip install $x -r requirements.txt")
    assert not pip_install_problems('e="--extra-index-url $U"; python -m pip install $e -r requirements-prod.txt')


def test_dockerfile_base_has_jdk(dockerfile):
    base = [args for word, args in dockerfile if word == "FROM"]
    assert base, "no FROM"
    image = base[-1].split()[0]
    assert image not in ("python:3.11-slim", "python:3.11", "python:3.11-slim-trixie"), \
        f"{image}: Debian trixie has no openjdk-17"
    runs = " ".join(args for word, args in dockerfile if word == "RUN")
    temurin = re.match(r"eclipse-temurin:(17|21)\b", image)
    assert temurin or re.search(r"\bopenjdk-(17|21)-(jre|jdk)(-headless)?\b", runs), \
        "neither an eclipse-temurin:17/21 base nor an openjdk-17/21 package"
    if not temurin:
        assert re.match(r"python:3\.11-slim-bookworm\b", image), f"{image}: which Debian has openjdk-17?"
    assert any(word == "WORKDIR" and args == WORKDIR for word, args in dockerfile)


def test_build_args_are_declared(services, dockerfile):
    declared = {args.split("=")[0].strip() for word, args in dockerfile if word == "ARG"}
    for name, svc in services.items():
        for key in (svc.get("build") or {}).get("args") or {}:
            assert key in declared, f"{name}: build arg {key} is not an ARG of the Dockerfile"


def test_dockerignore_excludes_local_state():
    pats = ignore_patterns(DOCKERIGNORE.read_text())
    for path in (".venv/bin/python", "airflow_home/simple_auth_manager_passwords.json.generated",
                 "lake/interactions_clean/ds=2026-11-22/part-0.parquet", "lake-ml100k/x", "data/synthetic/x",
                 "mlflow.db", "mlartifacts/1/x", "prod_state/prod-check.json", ".git/config",
                 "genre_lib/__pycache__/config.cpython-311.pyc", "docker/.env"):
        assert ignored(path, pats), f".dockerignore does not exclude {path}"
    for path in ("requirements.txt", "requirements-prod.txt", "airflow.cfg", "dags/genre_nightly.py",
                 "genre_lib/__init__.py", "genre_lib/datasets/__init__.py", "jobs/_bootstrap.py",
                 "configs/default.yaml", "docker/spark-gpu-discovery.sh"):
        assert (ROOT / path).exists() and not ignored(path, pats), f".dockerignore excludes {path}"
    # the matcher itself
    assert ignored("a/b/c.pyc", ignore_patterns("**/*.pyc")) and not ignored("x/lake", ignore_patterns("lake*"))
    assert not ignored("data/keep", ignore_patterns("data\n!data/keep"))


# ---------------------------------------------------------------- services

def test_airflow_and_mlflow_use_separate_databases(services):
    pg = environment(services["postgres"])
    airflow_envs = [environment(s) for s in services.values() if is_airflow(s)]
    conns = {e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] for e in airflow_envs}
    assert len(conns) == 1, f"Airflow services disagree on the metadata DB: {conns}"
    af = urlparse(conns.pop())
    ml = urlparse(arg(command(services["mlflow"]), "--backend-store-uri"))
    af_db, ml_db = af.path.lstrip("/"), ml.path.lstrip("/")
    assert af_db and ml_db and af_db != ml_db, f"Airflow and MLflow share the database {af_db!r}"
    assert af.username != ml.username, "Airflow and MLflow share a database role"
    assert af.hostname == ml.hostname == "postgres"
    assert (pg["AIRFLOW_DB"], pg["AIRFLOW_DB_USER"]) == (af_db, af.username), "init script makes another Airflow DB"
    assert (pg["MLFLOW_DB"], pg["MLFLOW_DB_USER"]) == (ml_db, ml.username), "init script makes another MLflow DB"
    for e in airflow_envs:
        assert urlparse(e["AIRFLOW__CELERY__RESULT_BACKEND"].split("+", 1)[1]).path.lstrip("/") == af_db
        assert e["PGPASSWORD"] == pg["AIRFLOW_DB_PASSWORD"]
    assert environment(services["mlflow"])["PGPASSWORD"] == pg["MLFLOW_DB_PASSWORD"]


def test_airflow_services_share_secrets_and_execution_api(raw, services):
    api = [n for n, s in services.items() if command(s)[:2] == ["airflow", "api-server"]]
    assert len(api) == 1, api
    api_port = environment(services[api[0]])["AIRFLOW__API__PORT"]
    names = [n for n, s in raw["services"].items() if is_airflow(s)]
    assert len(names) >= 6, names
    for name in names:
        env = environment(raw["services"][name])
        for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                    "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY"):
            assert key in env, f"{name}: no {key}"
            ref = REF_ONLY.match(env[key])
            assert ref and ref.group(1) == key and ref.group(2) == ":?", \
                f"{name}: {key} must be ${{{key}:?...}}, not {env[key]!r}"
        url = urlparse(environment(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (url.hostname, str(url.port), url.path) == (api[0], api_port, "/execution/"), \
            f"{name}: execution API {url.geturl()} is not {api[0]}:{api_port}/execution/"
        assert environment(services[name])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_depends_on_waits_for_health(services):
    for name, svc in services.items():
        deps = svc.get("depends_on")
        if not deps:
            continue
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for target, spec in deps.items():
            assert target in services, f"{name} depends on unknown {target}"
            cond = (spec or {}).get("condition")
            if "healthcheck" in services[target]:
                assert cond == "service_healthy", f"{name} -> {target}: {cond}, not service_healthy"
            else:
                assert cond == "service_completed_successfully" and services[target].get("restart") == "no", \
                    f"{name} -> {target}: {cond}; {target} has no healthcheck and is not a one-shot"
    for name, svc in services.items():  # whoever uses the databases waits for them
        if any("@postgres" in s for s in strings(svc)):
            assert "postgres" in (svc.get("depends_on") or {}), f"{name} uses postgres without waiting for it"
        if is_celery_worker(svc):
            assert {"redis", "airflow-api"} <= set(svc.get("depends_on") or {}), name


def test_healthchecks(services):
    def check(name: str) -> str:
        hc = services[name].get("healthcheck")
        assert hc and not hc.get("disable"), f"{name}: no healthcheck"
        return " ".join(hc["test"]) if isinstance(hc["test"], list) else hc["test"]

    assert "pg_isready" in check("postgres")
    assert re.search(r"redis-cli\b.*\bping", check("redis"))
    assert re.search(r"localhost:%s/health\b" % arg(command(services["mlflow"]), "--port"), check("mlflow"))
    api_port = environment(services["airflow-api"])["AIRFLOW__API__PORT"]
    assert f"localhost:{api_port}/api/v2/monitor/health" in check("airflow-api")
    ui = arg(command(services["spark-master"]), "--webui-port")
    assert f"localhost:{ui}/" in check("spark-master")


def test_shared_data_volume(compose, services):
    lake_root = yaml.safe_load((ROOT / "configs/default.yaml").read_text())["lake"]["root"]
    data_path = yaml.safe_load((ROOT / "configs/default.yaml").read_text())["data"]["path"]
    lake, data = f"{WORKDIR}/{lake_root}", f"{WORKDIR}/{data_path.split('/')[0]}"
    users = [n for n, s in services.items() if is_celery_worker(s) or spark_role(s)]
    assert {"airflow-worker", "spark-master", "spark-worker"} <= set(users), users
    sources = set()
    for name in users:
        m = mounts(services[name])
        assert lake in m and data in m, f"{name}: lake/data not mounted at {lake}, {data}"
        sources.add((m[lake], m[data]))
    assert len(sources) == 1, f"workers mount different volumes: {sources}"
    for vol in sources.pop():
        assert vol in (compose.get("volumes") or {}), f"{vol} is not a named volume"


def test_spark_cluster(services):
    master = services["spark-master"]
    url = f"spark://{arg(command(master), '--host')}:{arg(command(master), '--port')}"
    assert arg(command(master), "--host") == "spark-master"
    workers = {n: s for n, s in services.items() if spark_role(s) == "Worker"}
    cpu = sum(int((s.get("deploy") or {}).get("replicas", 1)) for n, s in workers.items() if "gpu" not in n)
    assert cpu >= 2, f"{cpu} CPU Spark worker(s)"
    for name, svc in workers.items():
        assert command(svc)[-1] == url, f"{name}: master {command(svc)[-1]} != {url}"
        assert "spark-master" in (svc.get("depends_on") or {})
    conns = {environment(s)["AIRFLOW_CONN_SPARK_DEFAULT"] for s in services.values() if is_airflow(s)}
    assert {json.loads(c)["host"] for c in conns} == {url}


def test_gpu_services(compose, services):
    gpu = {n: s for n, s in services.items() if "gpu" in n}
    assert gpu, "no GPU service"
    for name, svc in gpu.items():
        devices = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices")
        assert devices and any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])
                               for d in devices), f"{name}: no nvidia GPU reservation"
        index = ((svc.get("build") or {}).get("args") or {}).get("TORCH_INDEX_URL", "")
        assert "/whl/cpu" not in index, f"{name}: built with CPU torch ({index})"
    queues = [arg(command(s), "--queues").split(",") for s in gpu.values() if is_celery_worker(s)]
    assert any("gpu" in q for q in queues), "no GPU Celery worker on the queue gpu"
    # the DAG sends the torch stages there when GENRE_TORCH_QUEUE names it (tests/test_dag.py): every
    # Airflow service gets the variable, and the README says which value the GPU worker serves
    airflow = [n for n in services if n.startswith("airflow")]
    assert airflow and all("GENRE_TORCH_QUEUE" in environment(services[n]) for n in airflow), airflow
    assert "GENRE_TORCH_QUEUE=gpu" in (ROOT / "README.md").read_text()
    opts = [environment(s).get("SPARK_WORKER_OPTS", "") for s in gpu.values() if spark_role(s) == "Worker"]
    assert opts and all("spark.worker.resource.gpu.amount" in o for o in opts)
    script = re.search(r"spark\.worker\.resource\.gpu\.discoveryScript=(\S+)", opts[0]).group(1)
    assert script in DOCKERFILE.read_text(), f"{script} is not installed by the Dockerfile"
    cluster = yaml.safe_load((ROOT / "configs/cluster-gpu.yaml").read_text())["spark"]["conf"]
    assert cluster["spark.executor.resource.gpu.discoveryScript"] == script


def test_queues_and_hosts(services):
    default = {environment(s)["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] for s in services.values() if is_airflow(s)}
    assert len(default) == 1
    served = [arg(command(s), "--queues").split(",") for n, s in services.items()
              if is_celery_worker(s) and "gpu" not in n]
    assert any(default <= set(q) for q in served), f"no CPU worker serves the default queue {default}"
    uris = {environment(s)["MLFLOW_TRACKING_URI"] for s in services.values() if is_airflow(s)}
    assert len(uris) == 1
    uri = urlparse(uris.pop())
    mlflow = command(services["mlflow"])
    assert (uri.hostname, str(uri.port)) == ("mlflow", arg(mlflow, "--port"))
    assert uri.netloc in arg(mlflow, "--allowed-hosts").split(","), "MLflow would refuse the workers' Host header"
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published beyond localhost"


# ---------------------------------------------------------------- the compose client, where it exists

def test_docker_compose_config(tmp_path, example_env, raw):
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("no docker binary")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / ".docker")}
    if subprocess.run([docker, "compose", "version"], capture_output=True, env=env, timeout=30).returncode:
        pytest.skip("docker compose plugin not installed")
    base = [docker, "compose", "--project-directory", str(DOCKER), "-f", str(COMPOSE)]
    r = subprocess.run([*base, "--env-file", str(ENV_EXAMPLE), "config", "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["services"]) == set(raw["services"])
    partial = tmp_path / "partial.env"
    partial.write_text("".join(f"{k}={v}\n" for k, v in example_env.items() if k != "AIRFLOW__API_AUTH__JWT_SECRET"))
    r = subprocess.run([*base, "--env-file", str(partial), "config"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode != 0 and "AIRFLOW__API_AUTH__JWT_SECRET" in r.stderr, r.stderr
