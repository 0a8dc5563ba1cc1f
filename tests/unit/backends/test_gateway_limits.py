"""The shared gateway takes its deadlines and body limit from the recipes, the largest any asks for."""

from __future__ import annotations

from typing import Any

from framework.backends.ray_serve import traffic
from framework.backends.ray_serve.config import gateway_config


def _serve(monkeypatch) -> dict[str, dict[str, Any]]:
    configs: dict[str, dict[str, Any]] = {}

    def edit(fn, wait_for=None):
        return fn(configs)

    monkeypatch.setattr(traffic, "_edit", edit)
    return configs


def test_the_gateway_reads_the_recipes_timeouts_and_widens_for_a_slower_model(monkeypatch):
    configs = _serve(monkeypatch)
    name = gateway_config("/")["name"]
    traffic.ensure_gateway("/", 1_048_576, {"body_read_s": 2.0, "request_s": 10.0})
    assert configs[name]["args"] == {"max_body_bytes": 1_048_576, "models_prefix": "/v1/models",
                                     "body_read_s": 2.0, "request_s": 10.0}
    first = configs[name]
    traffic.ensure_gateway("/", 1_048_576, {"body_read_s": 1.0, "request_s": 5.0})
    assert configs[name] is first  # nothing grew: not redeployed
    traffic.ensure_gateway("/", 4_194_304, {"body_read_s": 1.0, "request_s": 60.0})
    assert configs[name]["args"] == {"max_body_bytes": 4_194_304, "models_prefix": "/v1/models",
                                     "body_read_s": 2.0, "request_s": 60.0}

