"""The workspace's Ray head stops in the middle of a canary (issue 13's chaos suite).

Version 1 serves; version 2's canary holds its first step (5%) when the head goes down, taking
Serve and the rollout controller with it. ``loom launch`` of the same recipe then serves again with
version 1 stable, and version 2 is never promoted without an analysis: its rollout resumes from the
saved state (or is aborted), and the champion alias stays on version 1.

Runs the CLI in subprocesses, as a person does: the workspace head, not the tests' session Ray.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from test_head_restart import KEY, _loom

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def _ask(port: int, model_id: str = "churn") -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/churn/predictions",
        data=json.dumps({"model_id": model_id, "entities": {"customer_id": "C000042"}}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def test_a_head_lost_mid_canary_serves_stable_again_and_never_promotes_unanalysed(project: Path):
    import sys

    from framework.rollout.status import status

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
    import serving_helpers as H

    port, metrics = H.free_port(), H.free_port()
    base = ["recipe=churn", f"serving.http.port={port}", f"env.metrics_export_port={metrics}",
            "serving.num_cpus_per_replica=0.2", "serving.surge_replicas=0",
            "training.model.num_boost_round=10"]
    v2 = [*base, "training.model.params.max_depth=5", "rollout.steps=[5,100]",
          "rollout.interval_s=60", "++rollout.analysis.max_inconclusive=0"]
    try:
        first = _loom(project, "launch", *base, "rollout=direct")
        assert first.returncode == 0, first.stdout + first.stderr
        started = _loom(project, "launch", *v2, "--detach")
        assert started.returncode == 0, started.stdout + started.stderr
        running = status(project / ".loom", "churn")
        assert running["status"] == "running" and running["candidate_version"] == "2", running

        assert _loom(project, "down").returncode == 0  # Serve and the controller go with it
        lost_at = time.time()
        again = _loom(project, "launch", *v2, "--detach")
        assert again.returncode == 0, again.stdout + again.stderr
        back_at = time.time()
        assert _ask(port, "churn@stable")["model_version"] == "1"  # the stable version serves
        after = status(project / ".loom", "churn")
        assert after["status"] in ("running", "aborted"), after
        assert after["stable_version"] == "1" and after["candidate_version"] == "2"
        assert after["phase"]["index"] == 1  # still its first step: nothing was skipped
        events = [line["event"] for line in after["timeline"]]
        assert "promoted" not in events and "analysis" not in events, after["timeline"]
        deadline = time.monotonic() + 60  # the new controller's first line comes as it starts
        while after["status"] == "running" and "resumed" not in events:
            assert time.monotonic() < deadline, after["timeline"]
            time.sleep(0.5)
            after = status(project / ".loom", "churn")
            events = [line["event"] for line in after["timeline"]]
        assert "promoted" not in events and after["phase"]["index"] == 1, after["timeline"]
        champion = _loom(project, "registry", "show", *v2)  # the champion alias by default
        assert champion.returncode == 0, champion.stderr
        assert json.loads(champion.stdout)["version"] == "1"
        print(f"\nhead lost mid-canary: serving again {back_at - lost_at:.0f} s after `loom down` "
              f"(loom launch, no retraining); rollout of version 2 {after['status']} at step 1; "
              "champion stays 1")
    finally:
        _loom(project, "rollout", "abort", *v2)
        _loom(project, "down")
