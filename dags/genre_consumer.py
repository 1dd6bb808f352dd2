"""genre_consumer: an example downstream DAG, run whenever genre_nightly commits `recommendations`.

Scheduled on the Asset `genre://lake/recommendations`: the scheduler creates a run when the
nightly's recommend task emits an event for it. The task reads which night it was triggered for
from the triggering event's extra (ds, run_id, rows, path) and checks that partition is committed
with that producing run and row count. Paused at creation like every DAG here: unpause it to use it.
"""
from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, task

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from genre_lib.orchestration import dag_support as support  # noqa: E402

RECOMMENDATIONS = support.table_asset("recommendations")


@dag(dag_id="genre_consumer", schedule=[RECOMMENDATIONS], start_date=datetime(2020, 1, 1), catchup=False,
     max_active_runs=1, dagrun_timeout=support.timeout("consumer"), tags=["genre", "example"], doc_md=__doc__)
def genre_consumer():
    @task(retries=0, execution_timeout=support.timeout("resolve_run"),
          doc_md="Reads the triggering `recommendations` event and that partition's manifest; writes XCom.")
    def read_night(triggering_asset_events=None) -> dict:
        night = support.night_from_events(triggering_asset_events[RECOMMENDATIONS])
        print(f"recommendations for night {night['ds']}: {night['rows']} rows from run {night['run_id']} "
              f"at {night['path']}")
        return night

    read_night()


genre_consumer()
