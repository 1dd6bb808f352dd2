"""configs/cluster-gpu.yaml, the scale-out profile (Spark standalone with GPU executors, an s3a:// lake,
the encoder on the executors), runs a night on this machine with a local master: its GPU resource
settings are refused in local mode (local Spark schedules no GPUs), so the override drops them, and the
lake and raw data are local folders. The encoder still runs as `encoder.engine: spark`
(predict_batch_udf on the local executors, on the CPU here)."""
from __future__ import annotations

import pytest

from genre_lib.config.settings import ConfigError, load_config
from genre_lib.lake.tables import STAGES
from tests.reliability.harness import Workspace

D = "2026-11-22"
PROFILE = "configs/cluster-gpu.yaml"


def test_profile_loads_and_its_gpu_settings_need_a_cluster():
    cfg = load_config(PROFILE)
    assert cfg.encoder.engine == "spark" and cfg.lake_root.startswith("s3a://")
    assert any(".resource.gpu." in k for k in cfg.spark.conf)
    with pytest.raises(ConfigError, match="GPU resource settings"):
        load_config(PROFILE, ["spark.master=local[2]"])


def test_profile_runs_a_night_with_a_local_master(tmp_path):
    ws = Workspace(tmp_path, ["spark.master=local[2]", "spark.conf={}"], config=PROFILE)
    ws.generate()  # the synthetic generator writes the raw layout that data.format raw reads
    for stage in STAGES:
        ws.run(stage, D, "gpu-profile-local")
    for stage in STAGES:
        for table, frame in ws.snapshot(stage, D).items():
            assert frame is not None, f"{table} not committed"
    assert ws.lake.manifest("item_embeddings", D)["row_count"] == ws.lake.manifest("items_clean", D)["row_count"]
