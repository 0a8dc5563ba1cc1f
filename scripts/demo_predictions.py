"""The demo's last word: one prediction from each deployed model through ``POST /v1/predictions``.

    python scripts/demo_predictions.py --url http://127.0.0.1:8000 --data data

Asks the gateway (the route that reaches any deployed model by ``model_id``) about a churn
customer, and about two fraud accounts from the sample labels: one that turned out fraudulent
and one that did not, so both of the fraud model's answers show.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path


def _post(url: str, body: dict, key: str) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")


def _accounts(data: Path) -> list[int]:
    import pandas as pd

    labels = pd.read_parquet(data / "fraud" / "labels.parquet")
    fraud = labels.loc[labels["is_fraud"] == 1, "account_id"]
    legit = labels.loc[labels["is_fraud"] == 0, "account_id"]
    return [int(fraud.iloc[0]), int(legit.iloc[0])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--data", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    key = os.environ["LOOM_API_KEY"]
    asks = [("churn", {"customer_id": "C000042"})]
    asks += [("fraud", {"account_id": a}) for a in _accounts(args.data)]
    failed = 0
    for model_id, entities in asks:
        answer = _post(f"{args.url}/v1/predictions", {"model_id": model_id, "entities": entities}, key)
        if "prediction" not in answer:
            failed += 1
            print(f"{model_id:<6} {json.dumps(entities):<28} error: {json.dumps(answer)[:300]}")
            continue
        print(f"{model_id:<6} {json.dumps(entities):<28} prediction={answer['prediction']!s:<10} "
              f"probability={answer['probability']:.3f}  version {answer['model_version']}  "
              f"{answer['latency_ms']:.1f} ms")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
