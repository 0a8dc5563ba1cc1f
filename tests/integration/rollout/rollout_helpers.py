"""Rollouts on real Ray Serve under real load: the demo churn app's fixtures' helpers and specs."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import bench_rollout as B  # noqa: E402

KEY = "test-key-0123456789"
#: The two demo models differ on purpose (5 vs 12 rounds), so their score distributions do too;
#: these tests judge errors and latency, and a PSI limit that only a broken model would pass.
LOOSE_PSI = 50.0
#: These tests judge what a switch or a weight change does to requests, not the deadlines: a
#: 2-core CI node at 150 requests/s (doubled by shadowing) can stall a replica past the default
#: 1 s model deadline, whose fallback answer (model_version None) is right there but not what
#: is judged here. Deadlines have their own tests (tests/integration/serving/test_serving_http.py).
LOOSE_DEADLINES = ("++serving.timeouts.model_ms=20000",
                   "++serving.timeouts.feature_lookup_ms=20000", "++serving.timeouts.request_s=60")


def spec(strategy: str, **kw: Any):
    from framework.rollout.phases import spec_from_recipe
    from framework.spec.rollout import BlueGreen, Canary

    model = Canary if strategy == "canary" else BlueGreen
    analysis = {"min_requests": 20, "max_prediction_psi": LOOSE_PSI, "max_p99_latency_ms": 2000,
                "max_latency_ratio": 10, **kw.pop("analysis", {})}
    return spec_from_recipe(model.model_validate({"strategy": strategy, "analysis": analysis, **kw}))


def run(app, fresh, spec, rps: float, n: int, until=None, load_until_end: bool = False):
    """Load from a second process; the rollout starts 1 s into it. Returns (records, status).

    ``load_until_end``: the load goes on (up to ``n`` requests) until the rollout has ended, so a
    slow rollout is never judged on windows without traffic.
    """
    from framework.rollout import actor

    out, stop = fresh["tmp"] / "load.jsonl", fresh["tmp"] / "load.stop"
    proc = B.spawn_load(app["url"], out, rps=rps, n=n, key=KEY,
                        stop_file=stop if load_until_end else None)
    try:
        time.sleep(1.0)
        actor.start(fresh["ws"], "churn", spec, fresh["ports"])
        if until is not None:
            until()
        final = actor.wait(fresh["ws"], "churn", progress=lambda line: None, timeout_s=120)
    finally:
        stop.touch()
        assert proc.wait(timeout=180) == 0
    return B.read_records(out), final


def traffic_changes(fresh) -> list[dict[str, Any]]:
    from framework.rollout.state import StateStore

    out: list[dict[str, Any]] = []
    for r in StateStore(fresh["ws"], "churn").read_audit():
        # a controller taking over re-applies the weights it holds: same weight, no change
        if r["event"] == "traffic" and (not out or out[-1]["weight"] != r["weight"]):
            out.append(r)
    return out


def audit(fresh, event: str) -> list[dict[str, Any]]:
    from framework.rollout.state import StateStore

    return [r for r in StateStore(fresh["ws"], "churn").read_audit() if r["event"] == event]


def analyses(fresh) -> list[dict[str, Any]]:
    return audit(fresh, "analysis")


