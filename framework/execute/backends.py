"""Which backend applies which step: a lookup table of import paths, imported only when needed."""

from __future__ import annotations

import importlib
from typing import Any

from framework.backends.base import Backend
from framework.compile.plan import Step
from framework.errors import BackendError

#: (step kind, rollout strategy or None) → "module:Class". Strategy matters only for rollout steps.
BACKEND_FOR_KIND: dict[tuple[str, str | None], str] = {
    ("feast.entity", None): "framework.backends.feast.backend:FeastBackend",
    ("feast.view", None): "framework.backends.feast.backend:FeastBackend",
    ("feast.service", None): "framework.backends.feast.backend:FeastBackend",
    ("feast.materialize", None): "framework.backends.feast.backend:FeastBackend",
    ("training.dataset", None): "framework.backends.feast.backend:FeastBackend",
    ("training.tune", None): "framework.backends.ray_train.backend:RayTrainBackend",
    ("training.train", None): "framework.backends.ray_train.backend:RayTrainBackend",
    ("training.gates", None): "framework.backends.model_registry.backend:MlflowRegistryBackend",
    ("registry.register", None): "framework.backends.model_registry.backend:MlflowRegistryBackend",
    ("serving.deploy", None): "framework.backends.ray_serve.backend:ServeBackend",
    ("rollout.step", "direct"): "framework.backends.ray_serve.backend:ServeBackend",
    ("rollout.step", "canary"): "framework.rollout.backend:RolloutBackend",
    ("rollout.step", "blue_green"): "framework.rollout.backend:RolloutBackend",
    ("monitoring.rules", None): "framework.backends.monitoring:MonitoringBackend",
}


class Backends:
    """Resolves steps to backend instances, one instance per class per run.

    ``override`` (tests) answers every step with one backend, e.g. ``FakeBackend()``; ``options``
    gives constructor arguments by class name, e.g. ``{"RolloutBackend": {"wait": False}}``.
    """

    def __init__(self, override: Backend | None = None,
                 options: dict[str, dict[str, Any]] | None = None) -> None:
        self.override = override
        self.options = options or {}
        self._instances: dict[str, Any] = {}

    def for_step(self, step: Step) -> Backend:
        if self.override is not None:
            return self.override
        strategy = None
        if step.kind == "rollout.step":  # delete steps carry no attrs: rollout.<strategy>.<phase>
            strategy = step.attrs.get("strategy") or step.address.split(".")[1]
        key = (step.kind, strategy)
        target = BACKEND_FOR_KIND.get(key)
        if target is None:
            raise BackendError(f"No backend applies steps of kind '{step.kind}' ({step.address}).")
        if target not in self._instances:
            module, _, cls = target.partition(":")
            try:
                factory = getattr(importlib.import_module(module), cls)
                self._instances[target] = factory(**self.options.get(cls, {}))
            except (ImportError, AttributeError) as exc:
                raise BackendError(f"The backend for {step.address} ({target}) is not available: {exc}. "
                                   "Reinstall Loom with `make install`.") from exc
        return self._instances[target]
