#!/usr/bin/env bash
# Spark GPU discovery script (spark.worker.resource.gpu.discoveryScript, and
# spark.executor.resource.gpu.discoveryScript in configs/cluster-gpu.yaml): prints the GPUs this
# container sees, as Spark expects them, e.g. {"name": "gpu", "addresses": ["0","1"]}.
# docker/Dockerfile installs it as /opt/spark/examples/src/main/scripts/getGpusResources.sh, the
# path configs/cluster-gpu.yaml names (Spark's own example script is not in the PySpark wheel).
# nvidia-smi is mounted into the container by the NVIDIA container toolkit (capability utility).
set -euo pipefail
addresses=$(nvidia-smi --query-gpu=index --format=csv,noheader \
    | awk 'NF { gsub(/ /, ""); printf "%s\"%s\"", (n++ ? "," : ""), $0 }')
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
