"""kill -9 a writing job at random points: the committed partition stays readable and intact, no
partial partition becomes visible, and a rerun gives what an undisturbed run gives."""
import random

import pytest

from tests.reliability.harness import OUTPUTS, STAGES, Workspace, assert_same, visible_partitions_complete

D = "2026-11-22"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("crash"))
    ws.generate()
    durations = {s: ws.run(s, D, "reference") for s in STAGES}
    return ws, durations, {s: ws.snapshot(s, D) for s in STAGES}


def trial(ws, durations, reference, stage, rng, n):
    killed = ws.run_killed(stage, D, f"crash-{stage}-{n}", after_s=rng.uniform(0.2, 1.0) * durations[stage])
    # whatever moment it died at, readers see either last run's partition or the new complete one
    check_after_crash(ws, reference, stage, n)
    return killed


def check_after_crash(ws, reference, stage, n):
    for table in OUTPUTS[stage]:
        if table != "evaluation":
            visible_partitions_complete(ws.lake, table)
    for table, before in reference[stage].items():
        assert_same(before, ws.snapshot(stage, D)[table], f"{table} after kill -9 of {stage}")
    ws.run(stage, D, f"rerun-{stage}-{n}")
    for table, before in reference[stage].items():
        assert_same(before, ws.snapshot(stage, D)[table], f"{table} after rerun of {stage}")


@pytest.mark.parametrize("stage, point", [
    ("clean_interactions", "before_manifest"),  # Spark writer: files in their attempts, no manifest yet
    ("clean_interactions", "after_manifest"),   # the first day committed, the others not yet
    ("embed_texts", "manifest_staged"),         # torch writer: the new manifest written beside the old one
])
def test_kill_at_commit_points(reference, stage, point):
    """The part CI runs: a Spark and a torch writer die at the delicate moments of a commit (every
    write of the protocol, with a concurrent reader: tests/test_lake_protocol.py)."""
    ws, _, ref = reference
    assert ws.run_dying_at(stage, D, f"fault-{stage}", point) == -9  # it did die there
    check_after_crash(ws, ref, stage, point)


def test_kill_clean_and_embed_at_random_points(reference):
    ws, durations, ref = reference
    rng = random.Random(7)
    for n, stage in enumerate(["clean_interactions", "embed_texts"]):
        trial(ws, durations, ref, stage, rng, n)


@pytest.mark.slow
def test_kill_every_job_at_random_points(reference):
    ws, durations, ref = reference
    rng = random.Random(11)
    plan = STAGES * 2  # 12 trials, two per writing job
    killed = sum(trial(ws, durations, ref, stage, rng, n) for n, stage in enumerate(plan))
    assert killed >= 10, f"only {killed} of {len(plan)} trials were killed before finishing"
