"""Ray Train waiting for CPUs says so every few seconds, names what holds them, and gives up after
``training.scaling.resource_wait_s`` (issue 13: before, ``fit()`` waited silently forever)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from framework.backends import cluster_wait
from framework.backends.ray_train._core import TrainJob, run_train_job
from framework.errors import BackendError

pytestmark = pytest.mark.integration


def test_fit_waiting_for_cpus_reports_and_gives_up(ray_session, tmp_path: Path, monkeypatch) -> None:
    ray = ray_session
    monkeypatch.setattr(cluster_wait, "REPORT_EVERY_S", 2.0)

    @ray.remote
    class CpuHog:
        def ready(self) -> bool:
            return True

    free = ray.available_resources().get("CPU", 0)
    hog = CpuHog.options(name="cpu-hog", num_cpus=free - 0.5).remote()   # leaves 0.5 CPU free
    ray.get(hog.ready.remote(), timeout=60)
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((200, 3)), "y_train": rng.integers(0, 2, 200).astype(float),
              "x_val": rng.random((50, 3)), "y_val": rng.integers(0, 2, 50).astype(float)}
    job = TrainJob(params={"objective": "binary:logistic", "nthread": 1}, num_boost_round=3,
                   early_stopping_rounds=None, num_workers=1, cpus_per_worker=1.0, use_gpu=False,
                   max_failures=0, storage_path=str(tmp_path), name="wait-test", resource_wait_s=7)
    lines: list[str] = []
    started = time.monotonic()
    try:
        with pytest.raises(BackendError) as err:
            run_train_job(job, arrays, ["a", "b", "c"], progress=lines.append)
        elapsed = time.monotonic() - started
    finally:
        ray.kill(hog)
    assert elapsed < 7 + 45, elapsed
    assert len(lines) >= 2, lines
    assert all("training: waiting" in line and "for 1 x {CPU: 1} on the Ray cluster" in line
               for line in lines), lines
    assert "ActorHandle" not in lines[0] and "CpuHog 'cpu-hog' (" in lines[0], lines[0]
    assert "(training.scaling.resource_wait_s=7)" in lines[0]
    message = str(err.value)
    assert message.startswith("Training waited 7 s (training.scaling.resource_wait_s) for 1 x {CPU: 1}")
    assert "CpuHog 'cpu-hog'" in message and "0.50 free" in message
    # Nothing of the run keeps waiting in the background: the CPUs are free again for the next one.
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < free and time.monotonic() < deadline:
        time.sleep(0.5)
    pending = [pg for pg in ray.util.placement_group_table().values() if pg["state"] == "PENDING"]
    assert pending == []
    result = run_train_job(dataclasses.replace(job, name="wait-test-2"), arrays, ["a", "b", "c"])
    assert result.rounds == 3


def test_a_sweep_no_trial_can_start_gives_up(ray_session, tmp_path: Path, monkeypatch) -> None:
    from framework.backends.ray_tune._core import SweepJob, run_sweep

    ray = ray_session
    monkeypatch.setattr(cluster_wait, "REPORT_EVERY_S", 2.0)

    @ray.remote
    class CpuHog:
        def ready(self) -> bool:
            return True

    free = ray.available_resources().get("CPU", 0)
    hog = CpuHog.options(name="cpu-hog", num_cpus=free - 0.5).remote()
    ray.get(hog.ready.remote(), timeout=60)
    rng = np.random.default_rng(0)
    data = {"x_train": rng.random((200, 3)), "y_train": rng.integers(0, 2, 200).astype(float),
            "x_val": rng.random((50, 3)), "y_val": rng.integers(0, 2, 50).astype(float)}
    job = SweepJob(base_params={"objective": "binary:logistic", "nthread": 1, "eval_metric": ["auc"]},
                   space={"max_depth": ray.tune.choice([2, 3])}, num_boost_round=3,
                   early_stopping_rounds=None, metric="auc", mode="max", task="binary", num_samples=1,
                   scheduler="fifo", max_concurrent=1, cpus_per_trial=1.0,
                   storage_path=str(tmp_path), name="sweep-wait", resource_wait_s=5)
    lines: list[str] = []
    started = time.monotonic()
    try:
        with pytest.raises(BackendError) as err:
            run_sweep(job, data, progress=lines.append)
    finally:
        ray.kill(hog)
    assert time.monotonic() - started < 5 + 45
    assert lines and lines[0].startswith("tuning: waiting "), lines
    assert str(err.value).startswith("Tuning waited 5 s (training.scaling.resource_wait_s)")
