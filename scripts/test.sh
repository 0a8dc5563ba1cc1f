#!/usr/bin/env bash
# Runs the whole suite: layer contracts, unit tests, then integration tests on real engines.
# Servers a test needs (Redis) are installed and started by the tests' own fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_DATA_DISABLE_PROGRESS_BARS=1 RAY_TRAIN_ENABLE_PRINT_PATCH=0 MLFLOW_DISABLE_TELEMETRY=true
.venv/bin/lint-imports
.venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
