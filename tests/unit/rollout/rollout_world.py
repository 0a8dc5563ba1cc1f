"""Rollout unit-test helpers: a fake model deployment (clock, Serve app, registry) and spec builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.rollout.controller import RolloutController
from framework.rollout.fakes import Behaviour, FakeClock, FakePromoter, FakeServing, initial_config
from framework.rollout.phases import RolloutSpec, spec_from_recipe
from framework.rollout.state import StateStore
from framework.spec.rollout import BlueGreen, Canary


def canary_spec(**kw: Any) -> RolloutSpec:
    raw = {"strategy": "canary", "steps": [5, 25, 50, 100], "interval_s": 10, "failure_limit": 2,
           "analysis": {"min_requests": 20}, **kw}
    return spec_from_recipe(Canary.model_validate(raw))


def blue_green_spec(**kw: Any) -> RolloutSpec:
    raw = {"strategy": "blue_green", "interval_s": 10, "bake_time_s": 30, "failure_limit": 1,
           "shadow_percent": 100, "analysis": {"min_requests": 20}, **kw}
    return spec_from_recipe(BlueGreen.model_validate(raw))


class World:
    """One fake model deployment: clock, app, registry, workspace store."""

    def __init__(self, tmp: Path, rps: float = 50.0, apply_s: float = 0.0,
                 **behaviours: Behaviour) -> None:
        self.clock = FakeClock()
        self.serving = FakeServing(self.clock, initial_config("3", "4"), rps=rps,
                                   behaviours=behaviours, apply_s=apply_s)
        self.promoter = FakePromoter(champion="3")
        self.store = StateStore(tmp / "ws", "churn")

    @property
    def deps(self) -> dict[str, Any]:
        return {"setter": self.serving, "source": self.serving, "promoter": self.promoter,
                "clock": self.clock}

    def start(self, spec: RolloutSpec, **kw: Any) -> RolloutController:
        return RolloutController.start(self.store, spec, **kw, **self.deps)

    def resume(self) -> RolloutController:
        return RolloutController.resume(self.store, **self.deps)

    def weights(self) -> list[float]:
        return [c["candidate_weight"] for _, c in self.serving.updates]
