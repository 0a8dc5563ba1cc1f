"""Chaos on a running rollout, real engines: the demo churn app on Ray Serve under load from a
second process, its detached controller actor, its audit log (issue 13's chaos suite).

- The controller killed four times mid-canary: the rollout still ends (promoted), never starts over,
  and whenever the state says its weights are live they are the weights Serve runs.
- The audit log unwritable mid-rollout: no decision is taken while it is (the weights hold), the
  status says why, and the rollout goes on once the log can be written again.

Results (requests, failures, time to recover) are in docs/reliability.md.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rollout_helpers import B, KEY, audit, spec

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


class _Watch:
    """Samples, every 0.2 s, the durable state's desired weights against the weights Serve runs;
    records every moment the state said they were live and Serve ran others."""

    def __init__(self, ws: Path) -> None:
        self.ws, self.samples, self.mismatches = ws, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from framework.backends.ray_serve import traffic
        from framework.rollout.state import StateStore

        store = StateStore(self.ws, "churn")
        while not self._stop.wait(0.2):
            before = _weights(traffic.current_user_config("churn"))
            st = store.load()
            after = _weights(traffic.current_user_config("churn"))
            if st is None or before != after or not st.applied:
                continue  # a change under way: nothing to compare yet
            self.samples += 1
            if _weights(st.user_config) != after:
                self.mismatches.append({"t": time.time(), "state": _weights(st.user_config),
                                        "serve": after, "phase": st.phase_index})

    def __enter__(self) -> "_Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _weights(cfg: dict[str, Any] | None) -> tuple:
    cfg = cfg or {}
    cand = (cfg.get("slots") or {}).get("candidate") or {}
    return cfg.get("candidate_weight"), cfg.get("shadow_percent"), cand.get("version")


def _load(app, fresh, rps: float, n: int):
    out, stop = fresh["tmp"] / "load.jsonl", fresh["tmp"] / "load.stop"
    return B.spawn_load(app["url"], out, rps=rps, n=n, key=KEY, stop_file=stop), out, stop


def test_the_controller_killed_four_times_mid_canary_still_promotes(app, fresh):
    import ray

    from framework.rollout import actor

    fresh["reset"]()
    steps = [10, 20, 30, 40, 50, 100]
    canary = spec("canary", steps=steps, interval_s=3, failure_limit=2)
    proc, out, stop = _load(app, fresh, rps=60, n=12000)
    kills: list[float] = []
    try:
        time.sleep(1.0)
        with _Watch(fresh["ws"]) as watch:
            actor.start(fresh["ws"], "churn", canary, fresh["ports"])
            for phase in range(1, 5):  # one kill in each of the phases 2 to 5
                actor.wait(fresh["ws"], "churn", progress=lambda line: None, timeout_s=90,
                           until=lambda s, p=phase: s["phase"]["index"] > p)
                ray.kill(actor._get_actor("churn"), no_restart=False)  # Ray restarts it
                kills.append(time.time())
            final = actor.wait(fresh["ws"], "churn", progress=lambda line: None, timeout_s=180,
                               ports=fresh["ports"])
    finally:
        stop.touch()
        assert proc.wait(timeout=180) == 0
    records = B.read_records(out)
    assert final["status"] == "promoted", final["reason"]
    assert fresh["promoter"].champion == "2"
    resumed = audit(fresh, "resumed") + audit(fresh, "controller_revived")
    assert len(resumed) >= 4, [r["reason"] for r in resumed]
    weights = [r["weight"] for r in audit(fresh, "step")]
    assert weights == steps  # each step entered once: a restarted controller never starts over
    assert watch.samples > 20 and watch.mismatches == []  # live weights = the durable state's
    assert [r for r in records if r["status"] != 200] == []
    assert len(records) > 500
    back = [min((r["ts"] for r in resumed if r["ts"] >= k), default=float("nan")) - k for k in kills]
    print(f"\ncontroller killed 4 times: {len(records)} requests, 0 failed; resumed "
          f"{', '.join(f'{b:.1f}' for b in back)} s after each kill; promoted; "
          f"{watch.samples} samples of live weights, 0 unlike the durable state's")


def test_an_unwritable_audit_log_holds_the_rollout_until_it_can_be_written(app, fresh):
    from framework.backends.ray_serve import traffic
    from framework.rollout import actor
    from framework.rollout.state import StateStore

    fresh["reset"]()
    canary = spec("canary", steps=[30, 100], interval_s=2, failure_limit=2)
    store = StateStore(fresh["ws"], "churn")
    proc, out, stop = _load(app, fresh, rps=60, n=12000)
    try:
        time.sleep(1.0)
        actor.start(fresh["ws"], "churn", canary, fresh["ports"])
        log = store.audit_path
        kept = log.read_bytes()
        log.unlink()
        log.mkdir()  # a directory where the file was: no write succeeds, not even as root
        broken_at = time.time()
        try:
            def held(s: dict[str, Any]) -> bool:
                problem = (s.get("controller") or {}).get("problem") or {}
                return "audit log could not be written" in str(problem.get("error", ""))

            s = actor.wait(fresh["ws"], "churn", progress=lambda line: None, timeout_s=60,
                           until=held)
            time.sleep(6)  # three analysis windows' worth: nothing may be decided meanwhile
            s = actor.status(fresh["ws"], "churn")
            assert s["status"] == "running" and s["phase"]["index"] == 1, s
            assert traffic.current_user_config("churn")["candidate_weight"] == 30
            assert "audit log could not be written" in s["controller"]["problem"]["error"]
        finally:
            log.rmdir()
            log.write_bytes(kept)
        repaired_at = time.time()
        final = actor.wait(fresh["ws"], "churn", progress=lambda line: None, timeout_s=120,
                           ports=fresh["ports"])
    finally:
        stop.touch()
        assert proc.wait(timeout=180) == 0
    assert final["status"] == "promoted", final["reason"]
    after = [r for r in store.read_audit() if r["ts"] >= broken_at]
    assert after and min(r["ts"] for r in after) >= repaired_at - 1  # nothing logged meanwhile
    records = B.read_records(out)
    assert [r for r in records if r["status"] != 200] == []
    print(f"\naudit log unwritable for {repaired_at - broken_at:.1f} s: {len(records)} requests, "
          f"0 failed; held at 30%; first decision {min(r['ts'] for r in after) - repaired_at:.1f} s "
          "after the log was back; promoted")
