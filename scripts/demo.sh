#!/usr/bin/env bash
# The demo: validate, plan and launch the churn and fraud recipes side by side on the embedded
# default, then ask each for predictions.
# Leaves the system running (a Ray head in the background, serving on 127.0.0.1:8000); `loom down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
KEY_FILE=.loom/demo_api_key
mkdir -p .loom
[ -s "$KEY_FILE" ] || (umask 077 && python3 -c 'import secrets; print("demo-" + secrets.token_hex(12))' > "$KEY_FILE")
export LOOM_API_KEY="${LOOM_API_KEY:-$(cat "$KEY_FILE")}"
export RAY_DATA_DISABLE_PROGRESS_BARS=1 RAY_TRAIN_ENABLE_PRINT_PATCH=0 MLFLOW_DISABLE_TELEMETRY=true
LOOM=.venv/bin/loom

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "loom validate recipe=churn"
$LOOM validate recipe=churn
step "loom plan recipe=churn"
$LOOM plan recipe=churn
step "loom launch recipe=churn"
$LOOM launch recipe=churn
step "loom predict recipe=churn customer_id=C000042"
$LOOM predict recipe=churn customer_id=C000042
step "loom predict recipe=churn customer_id=C000777 support_calls=9   (a request feature overrides Feast's)"
$LOOM predict recipe=churn customer_id=C000777 support_calls=9
step "loom registry list recipe=churn"
$LOOM registry list recipe=churn
step "loom launch recipe=fraud   (a second model in the same project; churn's steps are not touched)"
$LOOM launch recipe=fraud
step "loom plan recipe=churn   (nothing left to do)"
$LOOM plan recipe=churn
step "POST /v1/predictions   (one route, any deployed model by model_id)"
.venv/bin/python scripts/demo_predictions.py --url http://127.0.0.1:8000 --data data
step "loom batch recipe=churn   (every customer scored offline, point in time, by the champion)"
$LOOM batch recipe=churn
.venv/bin/python -c "import pandas as pd; print(pd.read_parquet('.loom/batch/churn/predictions.parquet').head(5).to_string(index=False))"
step "loom status"
$LOOM status
cat <<MSG

The churn and fraud models are live on http://127.0.0.1:8000 (API key in $KEY_FILE).
Start a canary of a new version (it advances as live traffic arrives; each step needs
rollout.analysis.min_requests candidate requests):
  LOOM_API_KEY=\$(cat $KEY_FILE) $LOOM launch recipe=churn training.model.params.max_depth=6 --detach
  $LOOM rollout status recipe=churn
Remove one model and what it alone owns:  $LOOM destroy recipe=fraud
Stop everything:  $LOOM down
MSG
