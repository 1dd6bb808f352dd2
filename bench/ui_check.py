"""`make ui-check`: the Airflow and MLflow UIs in a real browser (headless Chromium via Selenium).

Starts `airflow standalone` on 127.0.0.1 (free ports, a fresh AIRFLOW_HOME and SQLite DB under
artifacts/ui/state/), logs in with its generated admin password, opens genre_nightly, fills the
trigger form (run date 2026-11-22, a tiny synthetic profile through the overrides, and the
non-default `recommend.top_n=7`), triggers it, waits for success, then starts `mlflow server` on
the run's store. Screenshots go to artifacts/ui/; every page is also checked for what it must show:
task states, run names, `recommend.top_n` = 7 in the logged params, and 7 rows per user in the
recommendations (the lake table and the evaluation report). Exit 0 only if all checks pass.
Everything it started is stopped at the end (`--keep` leaves the servers up and prints their URLs).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from genre_lib.lake.tables import STAGES  # noqa: E402

OUT = ROOT / "artifacts" / "ui"
STATE = OUT / "state"
RUN_DATE = "2026-11-22"
TOP_N = 7
TINY = ["data.synthetic.users=40", "data.synthetic.items=60", "data.synthetic.interactions=1500",
        "data.synthetic.days=3", "spark.shuffle_partitions=2", "classifier.epochs=5", "encoder.max_length=32"]
TASKS = ["resolve_run", *STAGES, "finish_run"]
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1600,1400"]


def log(msg: str) -> None:
    print(f"[ui-check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Servers started here, each in its own process group, stopped by group id at the end."""

    def __init__(self, env: dict):
        self.env, self.procs = env, {}

    def start(self, name: str, cmd: list[str]) -> None:
        out = open(STATE / "logs" / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def check(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}); see {STATE}/logs/{name}.log")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def environment() -> dict:
    api, mlflow_port = free_port(), free_port()
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}",
            "AIRFLOW_HOME": str(STATE / "airflow_home"), "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{STATE}/airflow_home/airflow.db",
            "GENRE_AIRFLOW_DB_CONN": f"sqlite:///{STATE}/airflow_home/airflow.db",  # the maintain task's db clean
            "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(api),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # one secret for every standalone component (the committed airflow.cfg has none, and
            # components that each make their own refuse each other's tokens)
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # the check triggers its own run; the cron schedule must not add a full-size night
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
            "MLFLOW_TRACKING_URI": f"sqlite:///{STATE}/mlflow.db", "GENRE_MLFLOW_PORT": str(mlflow_port),
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GENRE_ALLOWED_ROOTS": str(STATE), "NO_PROXY": "*"}


def overrides() -> list[str]:
    return [f"lake.root={STATE}/lake", f"data.path={STATE}/data", f"publish.sqlite_path={STATE}/serving/serving.db",
            *TINY, f"recommend.top_n={TOP_N}"]


def wait(what: str, ok, timeout: float, procs: Processes, every: float = 2.0):
    t0 = time.time()
    while True:
        procs.check()
        value = ok()
        if value:
            return value
        if time.time() - t0 > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(every)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def sql(env: dict, query: str, args: tuple = ()) -> list:
    with sqlite3.connect(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"), timeout=30) as c:
        return c.execute(query, args).fetchall()


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in [*CHROME_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='ui-check-chrome-')}"]:
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)


def body_text(driver) -> str:
    """The page's text; empty while the document is being replaced (a navigation or a React remount
    between finding <body> and reading it), so the waits around it simply look again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except (StaleElementReferenceException, NoSuchElementException):
        return ""


def retry_stale(fn, timeout: float = 60):
    """fn(), again whenever React re-rendered an element it held (stale reference), up to timeout."""
    from selenium.common.exceptions import StaleElementReferenceException

    t0 = time.time()
    while True:
        try:
            return fn()
        except StaleElementReferenceException:
            if time.time() - t0 > timeout:
                raise
            time.sleep(0.5)


def on_fresh(driver, by, value, action, timeout: float = 60):
    """Find the element and act on it, finding it again if it went stale in between."""
    return retry_stale(lambda: action(wait_for(driver, by, value, timeout)), timeout)


def wait_text(driver, needles: list[str], timeout: float = 60) -> str:
    """Wait until the page shows every needle; the page text."""
    t0 = time.time()
    while True:
        text = body_text(driver)
        if all(n in text for n in needles):
            return text
        if time.time() - t0 > timeout:
            missing = [n for n in needles if n not in text]
            raise AssertionError(f"{driver.current_url} does not show {missing}; it shows:\n{text[:3000]}")
        time.sleep(1)


def shot(driver, name: str) -> Path:
    path = OUT / name
    driver.save_screenshot(str(path))
    log(f"screenshot {path.relative_to(ROOT)}")
    return path


# --- Airflow -------------------------------------------------------------------------------------
def airflow_login(driver, base: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{base}/auth/login")

    def fill(el, text):
        el.clear()
        el.send_keys(text)

    on_fresh(driver, By.NAME, "username", lambda el: fill(el, "admin"))
    on_fresh(driver, By.NAME, "password", lambda el: fill(el, password))
    on_fresh(driver, By.NAME, "password", lambda el: el.send_keys(Keys.ENTER))
    wait_text(driver, ["Dags"])
    assert "/auth/login" not in driver.current_url, "login refused"


def wait_for(driver, by, value, timeout: float = 60):
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((by, value)))


def set_react_value(driver, element, value: str) -> None:
    """Set a React-controlled field's value as a paste would (typing key by key into the trigger
    form's textarea loses characters while React re-renders it)."""
    proto = "HTMLTextAreaElement" if element.tag_name == "textarea" else "HTMLInputElement"
    driver.execute_script(f"const set = Object.getOwnPropertyDescriptor({proto}.prototype, 'value').set;"
                          "set.call(arguments[0], arguments[1]);"
                          "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", element, value)


def trigger_from_form(driver, base: str) -> str:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/dags/genre_nightly")
    on_fresh(driver, By.CSS_SELECTOR, "button[aria-label='Trigger Dag']", lambda el: el.click())
    wait_for(driver, By.ID, "element_run_date")
    wait_text(driver, ["Run Parameters", "Config profile", "Stages", "Re-embed every item"])
    on_fresh(driver, By.ID, "element_run_date",  # the picker's mm/dd/yyyy
             lambda el: el.send_keys("".join((RUN_DATE[5:7], RUN_DATE[8:10], RUN_DATE[:4]))))

    def fill_overrides(box):
        set_react_value(driver, box, "\n".join(overrides()))
        driver.execute_script("arguments[0].style.height = (arguments[0].scrollHeight + 8) + 'px'", box)  # all lines

    on_fresh(driver, By.ID, "element_overrides", fill_overrides)
    driver.execute_script("document.activeElement.blur()")  # out of the date field, so it shows unselected
    time.sleep(1)
    run_date = on_fresh(driver, By.ID, "element_run_date", lambda el: el.get_attribute("value"))
    assert run_date == RUN_DATE, run_date
    box = on_fresh(driver, By.ID, "element_overrides", lambda el: el.get_attribute("value"))
    assert box.splitlines() == overrides(), box
    text = wait_text(driver, ["configs/default.yaml", *STAGES])  # profile and the stage multi-select
    assert f"recommend.top_n={TOP_N}" in box
    shot(driver, "01-trigger-form.png")
    assert "Trigger Dag - genre_nightly" in text
    retry_stale(lambda: [b for b in driver.find_elements(By.TAG_NAME, "button")
                         if b.text.strip() == "Trigger"][-1].click())
    t0 = time.time()
    while "/runs/" not in driver.current_url:
        if time.time() - t0 > 60:
            raise AssertionError(f"the form did not trigger a run; page:\n{body_text(driver)[:2000]}")
        time.sleep(1)
    return urllib.parse.unquote(driver.current_url.rsplit("/runs/", 1)[1])


def check_run_pages(driver, base: str, run_id: str) -> dict:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/dags/genre_nightly/runs/{urllib.parse.quote(run_id)}")
    text = wait_text(driver, [run_id, "Task Instances", *TASKS])
    rows = retry_stale(lambda: {t.split("\n")[0]: t for t in
                                (r.text for r in driver.find_elements(By.CSS_SELECTOR, "tbody tr"))
                                if t.split("\n")[0] in TASKS})
    assert set(rows) == set(TASKS), f"task rows {sorted(rows)}"
    not_ok = {t: r for t, r in rows.items() if "Success" not in r}
    assert not not_ok, f"tasks not shown as Success: {not_ok}"
    assert "Success" in text.split("Task Instances")[0], "the run is not shown as Success"
    shot(driver, "02-grid.png")
    on_fresh(driver, By.CSS_SELECTOR, "button[aria-label^='Show Graph']", lambda el: el.click())
    wait_text(driver, TASKS)
    time.sleep(3)  # the layout animates in
    node_text = retry_stale(lambda: {t.split("\n")[0]: t for t in
                                     (n.text for n in driver.find_elements(By.CSS_SELECTOR, ".react-flow__node"))})
    assert set(TASKS) <= set(node_text), f"graph nodes {sorted(node_text)}"
    assert all("success" in node_text[t].lower() for t in TASKS), node_text
    shot(driver, "03-graph.png")
    return {"task_rows": rows, "graph_nodes": node_text}


# --- MLflow --------------------------------------------------------------------------------------
def close_assistant(driver) -> None:
    """MLflow 3's assistant side panel opens on a fresh profile and hides half the page."""
    from selenium.webdriver.common.by import By

    for b in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        try:
            b.click()
        except Exception:  # noqa: BLE001 - not clickable: not the panel's
            pass


def mlflow_pages(driver, base: str, env: dict, run_id: str) -> dict:
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("genre-nightly")
    (parent,) = client.search_runs([exp.experiment_id], f"tags.airflow_run_id = '{run_id}' and tags.stage = 'pipeline'")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    names = sorted(r.info.run_name for r in children)
    assert sorted(r.data.tags["stage"] for r in children) == sorted(STAGES), names
    runs_url = f"{base}/#/experiments/{exp.experiment_id}/runs"

    # the experiment's runs table ("Model training" view), the night's parent expanded to its children
    driver.get(f"{runs_url}?workflowType=machine_learning")
    wait_text(driver, [parent.info.run_name], 90)
    close_assistant(driver)
    on_fresh(driver, By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']", lambda el: el.click())
    table = wait_text(driver, [parent.info.run_name, *names], 60)
    shot(driver, "04-mlflow-runs.png")

    # the parent run page: its child runs (one per stage) and the tags naming the DAG run
    driver.get(f"{runs_url}/{parent.info.run_id}")
    page = wait_text(driver, [parent.info.run_name, "Child runs", *names, "airflow_dag_id", "genre_nightly"], 90)
    close_assistant(driver)
    assert "Finished" in page, "the parent run is not shown as Finished"
    shot(driver, "05-mlflow-parent-run.png")

    # recommend's logged params: recommend.top_n = 7
    rec = next(r for r in children if r.data.tags["stage"] == "recommend")
    driver.get(f"{runs_url}/{rec.info.run_id}")
    wait_text(driver, [rec.info.run_name, "Parameters"], 90)
    close_assistant(driver)
    top_n = find_param(driver, "recommend.top_n")
    assert top_n == str(TOP_N), f"recommend.top_n shows {top_n!r}"
    shot(driver, "06-mlflow-recommend-params.png")

    # the evaluation report in MLflow's artifact viewer (an iframe): its top, then tonight's section
    ev = next(r for r in children if r.data.tags["stage"] == "evaluate")
    driver.get(f"{runs_url}/{ev.info.run_id}/artifacts/report.html")
    wait_text(driver, [ev.info.run_name, "report.html"], 90)
    close_assistant(driver)
    on_fresh(driver, By.TAG_NAME, "iframe", driver.switch_to.frame)
    try:
        report = wait_text(driver, ["Metrics per model", "Per-model bar charts", "Coverage, novelty, diversity",
                                    "Genre mix"], 60)
        assert f"rows per user: min {TOP_N}, max {TOP_N}" in report, report[:3000]
        assert all(f"{m}@10" in report for m in ("ndcg", "coverage", "novelty")), report[:2000]
    finally:
        driver.switch_to.default_content()
    shot(driver, "07-mlflow-evaluation-report.png")
    on_fresh(driver, By.TAG_NAME, "iframe", driver.switch_to.frame)
    driver.execute_script("document.getElementById('recs').scrollIntoView({block: 'start'})")
    driver.switch_to.default_content()
    time.sleep(1)
    shot(driver, "08-mlflow-report-genre-mix.png")
    return {"parent": parent.info.run_name, "children": names, "recommend.top_n": top_n,
            "runs_table_shows_children": all(n in table for n in names)}


def find_param(driver, key: str) -> str:
    """The value shown beside a param key on an MLflow run page, after filtering its params table
    (a run logs ~100 params) through the "Search parameters" box."""
    from selenium.webdriver.common.by import By

    def search(box):
        box.click()
        box.clear()
        box.send_keys(key)

    def shown():
        for row in driver.find_elements(By.CSS_SELECTOR, "tr, [role='row']"):
            cells = [c.strip() for c in row.text.split("\n") if c.strip()]
            if len(cells) == 2 and cells[0] == key:
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
                return cells[1]
        return None

    on_fresh(driver, By.CSS_SELECTOR, "input[placeholder='Search parameters']", search)
    t0 = time.time()
    while time.time() - t0 < 30:
        value = retry_stale(shown)
        if value is not None:
            return value
        time.sleep(1)
    raise AssertionError(f"{key} not on {driver.current_url}:\n{body_text(driver)[:3000]}")


def check_lake() -> dict:
    from genre_lib.lake.storage import Lake

    lake = Lake(str(STATE / "lake"))
    recs = lake.read_pandas("recommendations", RUN_DATE)
    per_user = recs.groupby("user_id").size()
    assert len(per_user) and (per_user == TOP_N).all(), per_user.value_counts().to_dict()
    return {"users": int(len(per_user)), "rows": int(len(recs))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", action="store_true", help="leave the servers running at the end")
    p.add_argument("--timeout", type=float, default=1200, help="seconds for the DAG run")
    args = p.parse_args()
    t_all = time.time()
    shutil.rmtree(STATE, ignore_errors=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    (STATE / "logs").mkdir(parents=True)
    env = environment()
    procs = Processes(env)
    summary: dict = {"state": str(STATE)}
    driver = None
    rc = 1
    try:
        sets = [a for o in overrides() for a in ("--set", o)]
        subprocess.run([sys.executable, "-m", "genre_lib.datasets", *sets], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        base = env["AIRFLOW__API__BASE_URL"]
        procs.start("standalone", ["airflow", "standalone"])
        wait("airflow api-server", lambda: http_ok(f"{base}/api/v2/monitor/health"), 300, procs)
        db = Path(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
        wait("genre_nightly parsed", lambda: db.exists() and sql(env, "SELECT 1 FROM dag WHERE dag_id='genre_nightly'"),
             300, procs)
        subprocess.run([sys.executable, "-m", "genre_lib.orchestration.dag_support", "pools"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        subprocess.run(["airflow", "dags", "unpause", "genre_nightly"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        pw_file = STATE / "airflow_home" / "simple_auth_manager_passwords.json.generated"
        password = wait("generated password", lambda: pw_file.exists() and json.loads(pw_file.read_text())["admin"],
                        120, procs)
        summary["airflow_up_s"] = round(time.time() - t_all)
        log(f"airflow standalone up on {base}")

        driver = browser()
        airflow_login(driver, base, password)
        run_id = trigger_from_form(driver, base)
        summary["run_id"] = run_id
        log(f"triggered {run_id} from the form; waiting for it")
        t_run = time.time()
        last = None

        def finished():
            nonlocal last
            states = dict(sql(env, "SELECT task_id, state FROM task_instance WHERE run_id=?", (run_id,)))
            if states != last:
                log(", ".join(f"{t}={states.get(t)}" for t in TASKS))
                last = states
            (state,), = sql(env, "SELECT state FROM dag_run WHERE run_id=?", (run_id,))
            return state if state in ("success", "failed") else None

        state = wait("the DAG run", finished, args.timeout, procs, every=5)
        summary["dag_run_s"] = round(time.time() - t_run)
        assert state == "success", f"DAG run {state}; task logs under {env['AIRFLOW_HOME']}/logs"
        summary["airflow"] = check_run_pages(driver, base, run_id)
        summary["lake"] = check_lake()

        mlflow_base = f"http://127.0.0.1:{env['GENRE_MLFLOW_PORT']}"
        procs.start("mlflow", ["mlflow", "server", "--backend-store-uri", env["MLFLOW_TRACKING_URI"],
                               "--host", "127.0.0.1", "--port", env["GENRE_MLFLOW_PORT"], "--workers", "1"])
        wait("mlflow server", lambda: http_ok(f"{mlflow_base}/health"), 180, procs)
        summary["mlflow"] = mlflow_pages(driver, mlflow_base, env, run_id)
        rc = 0
        log("PASS")
        if args.keep:
            log(f"servers left up: Airflow {base} (admin / {password}), MLflow {mlflow_base}")
    except Exception as e:  # report, then still stop everything
        summary["error"] = f"{type(e).__name__}: {e}"
        summary["traceback"] = traceback.format_exc()
        log(f"FAIL: {summary['error'][:4000]}")
        log("at " + " <- ".join(f"{f.name}:{f.lineno}" for f in reversed(traceback.extract_tb(e.__traceback__))))
        if driver is not None:
            try:
                shot(driver, "failure.png")
            except Exception:  # noqa: BLE001
                pass
    finally:
        if driver is not None:
            driver.quit()
        if not (args.keep and rc == 0):
            procs.stop()
        summary["total_s"] = round(time.time() - t_all)
        (OUT / "ui-check.json").write_text(json.dumps(summary, indent=1, default=str))
        log(f"{'PASS' if rc == 0 else 'FAIL'} in {summary['total_s']} s; summary in {OUT / 'ui-check.json'}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
