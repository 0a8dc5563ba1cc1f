"""A wait on the cluster says what it waits for, for how long and what holds it, then gives up."""

from __future__ import annotations

import time

from framework.backends import cluster_wait
from framework.backends.cluster_wait import ResourceWait


def test_a_pending_wait_prints_lines_and_expires(monkeypatch) -> None:
    monkeypatch.setattr(cluster_wait, "usage", lambda: "cluster 2 CPUs, 1.61 in use by Hog (1.5 CPU)")
    monkeypatch.setattr(cluster_wait, "_placement_groups", lambda: {})
    lines: list[str] = []
    wait = ResourceWait("training", {"CPU": 1.0}, 1, 0.5, "training.scaling.resource_wait_s",
                        lines.append, pending=lambda: 1, interval_s=0.2, poll_s=0.05)
    with wait:
        deadline = time.monotonic() + 5
        while not wait.expired() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert wait.expired() and len(lines) >= 2
    assert lines[0].startswith("training: waiting 0 s for 1 x {CPU: 1} on the Ray cluster; "
                               "cluster 2 CPUs, 1.61 in use by Hog (1.5 CPU); giving up in ")
    assert lines[0].endswith("(training.scaling.resource_wait_s=0.5)")
    message = str(wait.timeout_error())
    assert message.startswith("Training waited 0.5 s (training.scaling.resource_wait_s) for "
                              "1 x {CPU: 1} and the Ray cluster never had it free; cluster 2 CPUs")
    assert "raise training.scaling.resource_wait_s" in message


def test_no_lines_while_nothing_waits(monkeypatch) -> None:
    monkeypatch.setattr(cluster_wait, "_placement_groups", lambda: {})
    lines: list[str] = []
    with ResourceWait("training", {"CPU": 1.0}, 1, 0.2, "k", lines.append, pending=lambda: 0,
                      interval_s=0.05, poll_s=0.02) as wait:
        time.sleep(0.3)
    assert lines == [] and not wait.expired()


def test_only_new_placement_groups_that_none_of_which_run_count(monkeypatch) -> None:
    table = {"old": {"state": "PENDING"}}
    monkeypatch.setattr(cluster_wait, "_placement_groups", lambda: dict(table))
    wait = ResourceWait("tuning", {"CPU": 1.0}, 1, 10, "k", lambda line: None, poll_s=10)
    with wait:
        assert wait.pending() == 0               # another run's pending group is not ours
        table.update(a={"state": "PENDING"}, b={"state": "PENDING"})
        assert wait.pending() == 2
        table["c"] = {"state": "CREATED"}        # one trial runs: the others queue normally
        assert wait.pending() == 0
