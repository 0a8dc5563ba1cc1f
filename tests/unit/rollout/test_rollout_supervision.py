"""A supervised controller: synced audit lines, a safe pause when the audit log fails, a dead or
hung loop restarted from the saved state, a stall said by ``loom rollout status``, no credentials
in audit lines."""

from __future__ import annotations

import os
import threading
import time

from framework.rollout import actor, runner
from framework.rollout.health import STALL_APPLYING_S, STALL_S
from framework.rollout.status import format_status, status

from rollout_world import canary_spec


def events(world, name):
    return [r for r in world.store.read_audit() if r["event"] == name]


def _ws(world):
    return world.store.dir.parents[1]


def test_every_audit_line_is_on_disk_before_audit_returns(world, monkeypatch):
    synced: list[str] = []

    def spy(real):
        def sync(fd):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            return real(fd)
        return sync

    monkeypatch.setattr(os, "fdatasync", spy(os.fdatasync))
    monkeypatch.setattr(os, "fsync", spy(os.fsync))
    for i in range(3):
        world.store.audit({"ts": float(i), "event": "step"})
    assert synced.count(str(world.store.audit_path)) == 3  # each line, as it is written
    assert synced.count(str(world.store.dir)) == 1  # the new file's name, once


def test_an_unwritable_audit_log_pauses_the_rollout_with_a_clear_status(world, monkeypatch):
    ctl = world.start(canary_spec())
    ctl.run(should_stop=lambda: ctl.state.phase_index >= 1)
    real, broken = world.store.audit, {"on": True}

    def audit(record):
        if broken["on"]:
            raise PermissionError(13, "Permission denied", str(world.store.audit_path))
        real(record)

    monkeypatch.setattr(world.store, "audit", audit)
    weights, t0 = world.weights(), world.clock.now()
    ctl.run(should_stop=lambda: world.clock.now() > t0 + 60)  # never raises: it retries
    assert world.weights() == weights  # no decision without its audit line: traffic stays
    s = status(_ws(world), "churn", now=world.clock.now())
    problem = s["controller"]["problem"]
    assert s["status"] == "running" and problem["consecutive"] >= 3
    assert "PermissionError" in problem["error"] and "audit log could not be written" in problem["error"]
    assert "controller paused" in format_status(s) and "Permission denied" in format_status(s)
    broken["on"] = False
    assert ctl.run().status == "promoted"
    assert world.weights() == [5, 25, 50, 100, 0]
    assert status(_ws(world), "churn", now=world.clock.now())["controller"]["problem"] is None


def _runner(world, **kw):
    return runner.ControllerRunner(str(_ws(world)), "churn", lambda: world.deps, poll_s=0.001,
                                   sample_lag_s=0.0, **kw)


def _advance_until(world, done, limit_s: float = 60.0) -> bool:
    """Move the fake clock on while the runner's threads tick, until ``done()``."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if done():
            return True
        world.clock.sleep(0.2)
        time.sleep(0.001)
    return False


def test_a_dead_controller_loop_is_restarted_from_the_saved_state(world):
    r = _runner(world)
    try:
        r.begin(canary_spec().to_dict())
        first, calls = r.ctl, {"n": 0}
        real = first.tick_safely

        def dies_once():
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("a bug in the loop")
            return real()

        first.tick_safely = dies_once
        assert _advance_until(world, lambda: world.store.load().status == "promoted"
                              and world.store.load().applied)  # the last update is live
    finally:
        r.stop()
    assert r.deaths == 1 and r.ctl is not first
    (resumed,) = events(world, "resumed")
    assert "the controller loop died (RuntimeError: a bug in the loop)" in resumed["reason"]
    assert world.weights() == [5, 25, 50, 100, 0]  # the new loop went on; nothing repeated
    s = status(_ws(world), "churn")
    assert any("loop died" in line["text"] for line in s["timeline"])


def test_a_hung_loop_ends_the_actor_process_so_that_ray_restarts_it(world, monkeypatch):
    hang, release, restarted = threading.Event(), threading.Event(), threading.Event()
    real_set = world.serving.set

    def set_hangs(user_config, surge=False):
        if hang.is_set():
            release.wait(10)
        real_set(user_config, surge)

    world.serving.set = set_hangs
    monkeypatch.setattr(runner, "_restart_this_actor", restarted.set)
    r = _runner(world, hung_s=0.3)
    try:
        r.begin(canary_spec().to_dict())
        hang.set()  # the next traffic update never returns
        assert _advance_until(world, restarted.is_set)
    finally:
        release.set()
        r.stop()
    (hung,) = events(world, "controller_hung")
    assert "did not come round" in hung["reason"] and "resumes from the saved state" in hung["reason"]


def test_status_says_when_a_controller_stopped_beating(world):
    ctl = world.start(canary_spec())
    ctl.run(should_stop=lambda: ctl.state.phase_index >= 1)
    now, ws = world.clock.now(), _ws(world)
    assert status(ws, "churn", now=now)["controller"]["stalled"] is None
    assert "STALLED" not in format_status(status(ws, "churn", now=now))
    late = status(ws, "churn", now=world.store.load().updated_at + STALL_S + 5)
    assert "no heartbeat from the controller for 65 s" in late["controller"]["stalled"]
    text = format_status(late)
    assert "controller STALLED" in text and "`loom rollout abort recipe=NAME`" in text
    # a traffic update in flight may take minutes: a longer silence is allowed meanwhile
    saved = world.store.load()
    saved.applied = False
    world.store.save(saved)
    assert status(ws, "churn", now=saved.updated_at + STALL_S + 5)["controller"]["stalled"] is None
    late = status(ws, "churn", now=saved.updated_at + STALL_APPLYING_S + 5)
    assert "while making config_version" in late["controller"]["stalled"]


def test_a_ticking_controller_beats_even_when_nothing_is_due(world):
    ctl = world.start(canary_spec(interval_s=600))  # nothing to judge for ten minutes
    t0 = world.clock.now()
    ctl.run(should_stop=lambda: world.clock.now() > t0 + 3 * STALL_S)
    assert world.clock.now() - world.store.load().updated_at < STALL_S


def test_wait_hands_a_stalled_rollout_to_a_new_controller(world, monkeypatch):
    ctl = world.start(canary_spec(steps=[50, 100]))
    del ctl  # its actor is gone: the saved state stops beating (the fake clock is far behind)
    handed: list[str] = []

    def supervise(workspace, model_id, ports):
        handed.append(model_id)
        world.resume().run()  # the new controller, here in-process
        return "no heartbeat"

    monkeypatch.setattr(actor, "supervise", supervise)
    lines: list[str] = []
    final = actor.wait(_ws(world), "churn", progress=lines.append, poll_s=0.01,
                       ports=lambda: world.deps)
    assert final["status"] == "promoted" and handed == ["churn"]


def test_wait_without_ports_says_a_stall_once(world):
    world.start(canary_spec())
    polls, lines = iter(range(5)), []
    actor.wait(_ws(world), "churn", progress=lines.append, poll_s=0.001,
               until=lambda s: next(polls, None) is None)
    stalls = [line for line in lines if "controller stalled" in line]
    assert len(stalls) == 1 and "no heartbeat from the controller" in stalls[0]


class LeakyPromoter:
    """A registry whose first error message carries the tracking URI's credentials."""

    def __init__(self) -> None:
        self.champion, self.failed = "3", False

    def promote(self, version):
        if not self.failed:
            self.failed = True
            raise RuntimeError("MLflow at https://ci:s3cret@mlflow.example:5000 said 401 for "
                               "https://mlflow.example/api?token=tok3n&run=1")
        self.champion = version

    def tag_rollback(self, version, reason):
        pass


def test_no_credential_reaches_the_audit_log_or_the_state(world):
    world.promoter = LeakyPromoter()
    ctl = world.start(canary_spec(steps=[100]))
    ctl.run(should_stop=lambda: bool(events(world, "error")))
    problem = world.store.load().problem["error"]
    assert "https://***@mlflow.example:5000" in problem and "token=***&run=1" in problem
    assert ctl.run().status == "promoted"
    errors = events(world, "promote_error") + events(world, "error")
    assert errors and all("***" in e["error"] for e in errors)
    for path in (world.store.audit_path, world.store.state_path):
        assert "s3cret" not in path.read_text() and "tok3n" not in path.read_text()
