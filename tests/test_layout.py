"""The shape of the code: every table has one declared writer stage, whose job is a shim over one
stage module that writes it; jobs stay thin, modules stay readable, genre_lib has no import cycle,
and the README names what tables.py declares."""
import ast
import re
from pathlib import Path

from genre_lib.lake.tables import STAGES, TABLES

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "genre_lib"
WRITE = re.compile(r'\.(?:write_pandas_parts|write_pandas|write_spark|write_json|commit)\(\s*"(\w+)"')


def stage_modules() -> dict[str, str]:
    """stage -> the genre_lib module its job runs, read from jobs/<stage>.py."""
    out = {}
    for stage in STAGES:
        m = re.search(r'jobrun\.main\("(\w+)", "genre_lib\.(\w+)"', (ROOT / "jobs" / f"{stage}.py").read_text())
        assert m and m.group(1) == stage, f"jobs/{stage}.py does not run stage {stage} through jobrun.main"
        out[stage] = m.group(2)
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
        assert len(module.read_text().splitlines()) <= 400, module.relative_to(ROOT)
    # one job per nightly stage, plus genre_tuning's (it writes MLflow runs and profiles, no lake table)
    assert {p.stem for p in (ROOT / "jobs").glob("*.py")} == {"_bootstrap", "tune", *STAGES}


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


def test_no_import_cycle_in_genre_lib():
    graph = {}
    for path in LIB.rglob("*.py"):
        name = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
        graph[name] = {m for m in _imports(path) if m != name and not m.endswith("__init__")}
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
    assert "genre_lib.lake.tables" in graph and not any(m.startswith("genre_lib") for m in graph["genre_lib.lake.tables"])


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
