"""Stage check_inputs: tonight's clean interactions, quarantine and catalogue against the contract and
the trailing nights (genre_lib/checks/inputs.py) -> input_checks. A failed blocking check stops the
night at the publish gate; a failed warning is told and the night goes on (the night's verdict)."""
from __future__ import annotations

from genre_lib.checks.figures import failed, metrics, records
from genre_lib.checks.inputs import run_checks


def run(ctx) -> dict:
    found = records(ctx, "inputs", run_checks(ctx.lake, ctx.ds, ctx.cfg))
    ctx.lake.write_pandas("input_checks", ctx.ds, found, ctx.manifest(blocking_failed=len(failed(found, "blocking"))))
    return metrics(found)
