"""An in-memory backend for fast unit tests of the layers above; it passes the same contract tests."""

from __future__ import annotations

from typing import Any, ClassVar

from framework.backends.base import RunContext
from framework.compile.plan import STEP_KINDS, Step


class FakeBackend:
    """Remembers what was applied, by address, and returns canned outputs.

    ``fail_on`` names addresses whose apply raises, to test that a failed step leaves no half state.
    """

    kinds: ClassVar[tuple[str, ...]] = STEP_KINDS

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.applied: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_on = set(fail_on or ())

    def observe(self, step: Step, ctx: RunContext) -> str | None:
        return self.applied.get(step.address)

    def apply(self, step: Step, ctx: RunContext) -> dict[str, Any]:
        self.calls.append(("apply", step.address))
        if step.address in self.fail_on:
            raise RuntimeError(f"injected failure in {step.address}")
        self.applied[step.address] = step.fingerprint
        return {"fake": True, "address": step.address, **_canned(step)}

    def delete(self, address: str, ctx: RunContext) -> None:
        self.calls.append(("delete", address))
        self.applied.pop(address, None)


def _canned(step: Step) -> dict[str, Any]:
    if step.kind == "training.dataset":
        return {"rows": 0, "path": "fake://dataset.parquet"}
    if step.kind == "registry.register":
        return {"version": "1", "model_uri": "models:/fake/1"}
    return {}
