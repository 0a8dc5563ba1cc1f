"""One contract for the rollout controller's ports: the fakes and the real engines pass the same tests.

Traffic and samples: ``FakeServing`` and the real Serve app (``ServeTraffic`` + ``StatsSource``).
Registry: ``FakePromoter``, ``FilePromoter`` and ``RegistryPromoter`` on a real MLflow store.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key-0123456789"
#: One sample per request: its instance count is data (``framework/serving/stats.py``).
SAMPLE_KEYS = {"ts": float, "version": str, "role": str, "ok": bool, "latency_ms": float,
               "instances": int}


class FakeHarness:
    """FakeServing on a fake clock; traffic is synthesised at 50 requests a second."""

    def __init__(self) -> None:
        from framework.rollout.fakes import FakeClock, FakeServing, initial_config

        self.clock = FakeClock()
        self.serving = FakeServing(self.clock, initial_config("1", "2"), rps=50)
        self.setter = self.source = self.serving

    def now(self) -> float:
        return self.clock.now()

    def traffic(self, n: int) -> None:
        self.clock.sleep(n / 50 + 0.01)

    def slot(self, version: str) -> dict[str, Any]:
        from framework.rollout.fakes import slot

        return slot(version)


class ServeHarness:
    """The demo churn app on real Ray Serve; traffic is real HTTP requests."""

    def __init__(self, app: dict[str, Any]) -> None:
        from framework.rollout.engines import ServeTraffic, StatsSource

        self.app = app
        self.setter, self.source = ServeTraffic("churn"), StatsSource("churn")

    def now(self) -> float:
        return time.time()

    def traffic(self, n: int) -> None:
        import bench_rollout as B

        records = B.run_load(self.app["url"], KEY, rps=100, n=n, ids=self.app["ids"], threads=4)
        assert all(r["status"] == 200 for r in records)
        time.sleep(1.6)  # replicas ship samples about once a second

    def slot(self, version: str) -> dict[str, Any]:
        import bench_rollout as B

        return B.demo_slot(self.app["models"], version)


@pytest.fixture(scope="module")
def serve_app(ray_session, sample_data, tmp_path_factory):
    from ray import serve

    from framework.backends.ray_serve import traffic

    sys.path.insert(0, str(ROOT / "scripts" / "bench"))
    import bench_rollout as B

    os.environ["LOOM_API_KEY"] = KEY
    info = B.deploy_demo_app(sample_data, tmp_path_factory.mktemp("contract-app"), B.free_port())
    yield info
    from framework.serving.stats import drop_stats

    traffic.delete_app("churn")
    drop_stats("churn")
    serve.shutdown()


@pytest.fixture(params=["fake", pytest.param("serve", marks=pytest.mark.integration)])
def harness(request):
    if request.param == "fake":
        return FakeHarness()
    return ServeHarness(request.getfixturevalue("serve_app"))


def _config(h, weight: float, shadow: float, record: bool = True) -> dict[str, Any]:
    current = h.setter.current()
    return {"slots": {"stable": h.slot("1"), "candidate": h.slot("2")},
            "candidate_weight": weight, "shadow_percent": shadow,
            "config_version": int(current["config_version"]) + 1, "record_samples": record}


def test_set_is_what_current_reads_back(harness):
    cfg = _config(harness, 30, 0)
    harness.setter.set(cfg)
    assert harness.setter.current() == cfg


def test_samples_have_the_contract_shape_and_follow_the_weights(harness):
    harness.setter.set(_config(harness, 50, 0))
    start = harness.now()
    harness.traffic(200)
    samples = harness.source.window(start, harness.now())
    assert len(samples) >= 150
    for s in samples:
        assert all(isinstance(s[k], t) for k, t in SAMPLE_KEYS.items()), s
        assert s["score"] is None or 0.0 <= s["score"] <= 1.0
    by_role = {(s["role"], s["version"]) for s in samples}
    assert by_role == {("stable", "1"), ("candidate", "2")}
    share = sum(s["role"] == "candidate" for s in samples) / len(samples)
    assert 0.3 < share < 0.7
    assert harness.source.window(start - 3600, start - 3000) == []


def test_a_window_reads_back_the_same_samples_after_more_traffic(harness):
    # The controller accumulates quiet intervals by reading their window again, later.
    harness.setter.set(_config(harness, 50, 0))
    start = harness.now()
    harness.traffic(100)
    mid = harness.now()
    first = harness.source.window(start, mid)
    harness.traffic(100)
    assert first and harness.source.window(start, mid) == first
    assert len(harness.source.window(start, harness.now())) > len(first)


def test_answers_leave_no_samples_unless_a_rollout_asks_for_them(harness):
    harness.setter.set(_config(harness, 50, 0, record=False))
    start = harness.now()
    harness.traffic(100)
    assert harness.source.window(start, harness.now()) == []


def test_weight_zero_with_shadow_sends_no_live_candidate_answers(harness):
    harness.setter.set(_config(harness, 0, 100))
    start = harness.now()
    harness.traffic(100)
    roles = {s["role"] for s in harness.source.window(start, harness.now())}
    assert roles == {"stable", "shadow"}


# ---- the registry ---------------------------------------------------------------------------


@pytest.fixture(params=["fake", "file", "mlflow"])
def promoter(request, tmp_path, monkeypatch):
    from framework.rollout.fakes import FakePromoter, FilePromoter

    if request.param == "fake":
        return FakePromoter(champion="1")
    if request.param == "file":
        return FilePromoter(str(tmp_path / "registry.json"), champion="1")
    return _mlflow_promoter(tmp_path, monkeypatch)


def _mlflow_promoter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from framework.backends.model_registry.tracking import client_for
    from framework.rollout.engines import RegistryPromoter

    if importlib.util.find_spec("alembic") is not None:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    else:  # mlflow-skinny without alembic: MLflow's file store still has the registry
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = (tmp_path / "mlruns").as_uri()
    client = client_for(uri)
    client.create_registered_model("churn")
    for _ in range(2):
        client.create_model_version("churn", source=str(tmp_path / "model.ubj"))
    promoter = RegistryPromoter(uri, "churn")
    promoter.promote("1")
    return promoter


def _champion(p: Any) -> str | None:
    return p.champion() if callable(p.champion) else p.champion


def _tag(p: Any, version: str) -> str | None:
    if hasattr(p, "tags"):
        return p.tags.get(version)
    from framework.rollout.engines import TAG_ROLLBACK

    return p._client().get_model_version("churn", version).tags.get(TAG_ROLLBACK)


def test_promote_moves_champion_and_rollback_tags_without_moving_it(promoter):
    assert _champion(promoter) == "1"
    promoter.tag_rollback("2", "error rate 0.2 > 0.01")
    assert _champion(promoter) == "1" and _tag(promoter, "2") == "error rate 0.2 > 0.01"
    promoter.promote("2")
    assert _champion(promoter) == "2"
