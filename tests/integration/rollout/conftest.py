"""The demo churn app on Serve for rollout tests: version 1 stable, version 2 loaded at 0%."""

from __future__ import annotations

import functools
import os

import pytest

from rollout_helpers import LOOSE_DEADLINES, B, KEY


@pytest.fixture(scope="module")
def app(ray_session, sample_data, tmp_path_factory):
    """The churn app on Serve: version 1 stable, version 2 loaded at 0%, cache off."""
    from ray import serve

    from framework.backends.ray_serve import traffic

    os.environ["LOOM_API_KEY"] = KEY
    tmp = tmp_path_factory.mktemp("rollout-app")
    info = B.deploy_demo_app(sample_data, tmp, B.free_port(), overrides=LOOSE_DEADLINES)
    yield info
    from framework.rollout import actor

    from framework.serving.stats import drop_stats

    actor._stop_actor("churn")  # a controller left by a failed test must not outlive Serve
    traffic.delete_app("churn")
    drop_stats("churn")
    serve.shutdown()


@pytest.fixture
def fresh(app, tmp_path):
    """Slots reset to stable 1 / candidate 2 at 0%; a workspace and a file registry per test."""
    from framework.backends.ray_serve import traffic
    from framework.rollout.engines import real_ports
    from framework.rollout.fakes import FilePromoter

    def reset(**fault: float) -> None:
        current = traffic.current_user_config("churn")
        traffic.update_user_config("churn", {
            "slots": {"stable": B.demo_slot(app["models"], "1"),
                      "candidate": B.demo_slot(app["models"], "2", **fault)},
            "candidate_weight": 0, "shadow_percent": 0,
            "config_version": int(current["config_version"]) + 1},
            surge=True)  # as serving.deploy loads a candidate

    promoter = FilePromoter(str(tmp_path / "registry.json"), champion="1")
    return {"reset": reset, "ws": tmp_path / "ws", "promoter": promoter, "tmp": tmp_path,
            "ports": functools.partial(real_ports, "churn", promoter)}


