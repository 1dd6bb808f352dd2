"""The shape of the code: every stage declared once (lake/tables.py) with a shim job and one stage
module that writes its tables; genre_lib grouped in role packages of at most 12 modules, no module
over 350 lines, no import cycle, at most 8 modules from a job down to a leaf; the README names what
tables.py declares."""
import ast
import re
from pathlib import Path

from genre_lib.lake.tables import STAGE_SPECS, STAGES, TABLES

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "genre_lib"
WRITE = re.compile(r'\.(?:write_pandas_parts|write_pandas|write_spark|write_json|commit)\(\s*"(\w+)"')


def stage_modules() -> dict[str, str]:
    """stage -> the genre_lib module its job runs: jobs/<stage>.py calls jobrun.main("<stage>"), which
    runs the declared module genre_lib.stages.<stage>."""
    out = {}
    for stage in STAGES:
        m = re.search(r'jobrun\.main\("(\w+)", argv\)', (ROOT / "jobs" / f"{stage}.py").read_text())
        assert m and m.group(1) == stage, f"jobs/{stage}.py does not run stage {stage} through jobrun.main"
        assert STAGE_SPECS[stage].module == f"genre_lib.stages.{stage}"
        assert (LIB / "stages" / f"{stage}.py").is_file(), stage
        out[stage] = f"stages.{stage}"
    return out


def test_each_table_is_written_by_its_declared_stage_module_only():
    modules = stage_modules()
    writers: dict[str, set[str]] = {}
    for path in LIB.rglob("*.py"):
        for table in WRITE.findall(path.read_text()):
            writers.setdefault(table, set()).add(path.relative_to(LIB).with_suffix("").as_posix().replace("/", "."))
    clean_tables = {t for t, d in TABLES.items() if d.stage == "clean_interactions"}
    for table, decl in TABLES.items():
        assert writers.get(table) == {modules[decl.stage]}, (table, writers.get(table), decl.stage)
    assert set(writers) <= set(TABLES), f"writes to undeclared tables: {set(writers) - set(TABLES)}"
    assert clean_tables == {"interactions_clean", "interactions_quarantine", "items_clean"}


def test_jobs_are_shims_and_modules_stay_readable():
    for job in (ROOT / "jobs").glob("*.py"):
        assert len(job.read_text().splitlines()) <= 25, job.name
    for module in LIB.rglob("*.py"):
        assert len(module.read_text().splitlines()) <= 350, module.relative_to(ROOT)
    # one job per nightly stage, plus genre_tuning's (it writes MLflow runs and profiles, no lake table)
    assert {p.stem for p in (ROOT / "jobs").glob("*.py")} == {"_bootstrap", "tune", *STAGES}
    # role packages: the folder list is the architecture; no loose module at the top
    assert not [p.name for p in LIB.glob("*.py") if p.name != "__init__.py"]
    for folder in (p for p in LIB.iterdir() if p.is_dir() and p.name != "__pycache__"):
        modules = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
        assert 0 < len(modules) <= 12, (folder.name, len(modules))


def _imports(path: Path) -> set[str]:
    """genre_lib modules a file imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genre_lib"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            out |= {n for n in names if _module_file(n)} or {node.module}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("genre_lib")}
    return {m for m in out if _module_file(m)}


def _module_file(name: str):
    base = ROOT / Path(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _graph() -> dict[str, set[str]]:
    """genre_lib modules and jobs -> the genre_lib modules they import (a package's face excluded)."""
    graph = {}
    for path in [*LIB.rglob("*.py"), *(ROOT / "jobs").glob("*.py")]:
        name = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
        graph[name] = {m for m in _imports(path) if m != name and _module_file(m).name != "__init__.py"}
    return graph


def test_no_import_cycle_and_short_chains():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
    assert not any(m.startswith("genre_lib") for m in graph["genre_lib.lake.tables"])

    longest: dict[str, list[str]] = {}

    def chain(node):  # the longest import chain from node down to a leaf, node included
        if node not in longest:
            longest[node] = [node, *max((chain(n) for n in graph.get(node, ())), key=len, default=[])]
        return longest[node]

    for job in (n for n in graph if n.startswith("jobs.")):
        # what a job imports before its stage module (which jobrun imports by name once the checks pass)
        assert len(chain(job)) <= 8, f"{len(chain(job))} modules: " + " -> ".join(chain(job))
    # between the role packages too, arrows only go one way: the folders stack in layers
    package = lambda m: m.split(".")[1] if m.startswith("genre_lib.") and m.count(".") >= 2 else m  # noqa: E731
    folders: dict[str, set[str]] = {}
    for a, bs in graph.items():
        folders.setdefault(package(a), set()).update(package(b) for b in bs if package(b) != package(a))
    done: set[str] = set()

    def below(folder, trail):
        for nxt in folders.get(folder, ()):
            assert nxt not in trail, "packages import each other: " + " -> ".join([*trail, folder, nxt])
            if nxt not in done:
                below(nxt, [*trail, folder])
        done.add(folder)

    for folder in folders:
        below(folder, [])
    # evaluation measures models; it does not import the stages (the classifier's training stage included)
    assert not [(a, b) for a, bs in graph.items() for b in bs
                if a.startswith("genre_lib.evaluation.") and b.startswith("genre_lib.stages.")]


def test_readme_names_every_table_with_its_stage():
    readme = (ROOT / "README.md").read_text()
    flow = readme[readme.index("raw logs + catalogue"):]
    flow = flow[:flow.index("```")]
    for stage in STAGES:
        line = next((ln for ln in flow.splitlines() if f"-> {stage} " in ln), None)
        assert line, f"README flow lacks stage {stage}"
        for table, decl in TABLES.items():
            if decl.stage == stage:
                assert re.search(rf"\b{table}\b", line), f"README: {table} not on the line of {stage}"


def test_readme_is_a_front_door():
    """The README stays short; measurements live in docs/benchmarks.md, design in docs/architecture.md."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    for doc in ("benchmarks.md", "architecture.md", "configuration.md"):
        assert (ROOT / "docs" / doc).is_file(), doc
