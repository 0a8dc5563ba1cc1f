#!/usr/bin/env bash
# The demo: validate, plan and launch the churn recipe on the embedded default, then show predictions.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_API_KEY="${LOOM_API_KEY:-demo-$(python3 -c 'import secrets; print(secrets.token_hex(8))')}"
export RAY_DATA_DISABLE_PROGRESS_BARS=1 RAY_TRAIN_ENABLE_PRINT_PATCH=0 MLFLOW_DISABLE_TELEMETRY=true
LOOM=.venv/bin/loom

echo "== loom validate recipe=churn"
$LOOM validate recipe=churn
echo
echo "== loom plan recipe=churn"
$LOOM plan recipe=churn
