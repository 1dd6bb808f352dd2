"""Stage check_inputs: tonight's clean interactions, quarantine and catalogue against the contract and
the trailing nights (genre_lib/checks/inputs.py) -> input_checks. A failed blocking check stops the
night at the publish gate; a failed warning is told and the night goes on (the night's verdict)."""
from __future__ import annotations

import logging

from genre_lib.checks.figures import failed, frame, metrics
from genre_lib.checks.inputs import run_checks

log = logging.getLogger("genre")


def run(ctx) -> dict:
    records = frame(ctx.ds, "inputs", run_checks(ctx.lake, ctx.ds, ctx.cfg), ctx.cfg.checks)
    for r in records.itertuples():
        log.info("check %s (%s): %s: %s", r.check, r.severity, "passed" if r.passed else "FAILED", r.message)
    ctx.lake.write_pandas("input_checks", ctx.ds, records, ctx.manifest(blocking_failed=len(failed(records, "blocking"))))
    return metrics(records)
