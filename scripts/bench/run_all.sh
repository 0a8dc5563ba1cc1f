#!/usr/bin/env bash
# Runs every benchmark with the settings docs/benchmarks.md reports. Each prints its ratios against
# the baseline it measures in the same run. Run on a quiet machine: other load skews the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
export LOOM_API_KEY="${LOOM_API_KEY:-bench-key}" RAY_DATA_DISABLE_PROGRESS_BARS=1 MLFLOW_DISABLE_TELEMETRY=true
run() { printf '\n== %s\n' "$*"; "$@"; }
run $PY scripts/bench/bench_validate.py --runs 21
run $PY scripts/bench/bench_feature_lookup.py --calls 4000
run $PY scripts/bench/bench_training_dataset.py --sizes 100000 1000000 --runs 5
run $PY scripts/bench/bench_training.py
run $PY scripts/bench/bench_training_scale.py --rows 10000000 --workers 2
run $PY scripts/bench/bench_batch.py --rows 1000000 --repeats 3
run $PY scripts/bench/bench_stream.py --events 20000 --rounds 3 --latency-s 8
run $PY scripts/bench/bench_serving.py --rounds 3
run $PY scripts/bench/bench_slot_metrics.py --calls 20000 --rounds 3
run $PY scripts/bench/bench_predictor.py --rounds 3
run $PY scripts/bench/bench_launch.py --runs 5
run $PY scripts/bench/bench_rollout.py bench --rps 50 --changes 12 --rounds 3
