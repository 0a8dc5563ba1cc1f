"""Observes and applies plans: state-backed observation, optional engine refresh, step-by-step apply."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from framework.backends.base import RunContext
from framework.compile.plan import Plan, Step
from framework.errors import BackendError, LoomError, PlanError
from framework.execute.backends import Backends
from framework.execute.diff import diff
from framework.execute.state import State


def observe(plan: Plan, ctx: RunContext, state: State, backends: Backends,
            refresh: bool = False) -> dict[str, str | None]:
    """Observed fingerprint per address: from the state file, or from the engines with ``refresh``.

    The state file answers in milliseconds and imports no engine SDK; ``refresh`` asks every backend
    what its engine really holds (like ``terraform plan -refresh``), which catches changes made
    outside Loom at the cost of importing Feast, Ray and MLflow.
    """
    if not refresh:
        return {s.address: state.fingerprint(s.address) for s in plan.steps}
    seen = {}
    for step in plan.steps:
        seen[step.address] = _call(step, "observe", lambda: backends.for_step(step).observe(step, ctx))
        if seen[step.address] is not None:
            ctx.outputs[step.address] = state.outputs(step.address)
    return seen


def plan_against(plan: Plan, ctx: RunContext, state: State, backends: Backends,
                 refresh: bool = False) -> Plan:
    """``plan`` with every step's action decided against what is observed."""
    owned = {addr: entry["kind"] for addr, entry in state.entries.items()}
    observed = {addr: entry["fingerprint"] for addr, entry in state.entries.items()}
    observed.update(observe(plan, ctx, state, backends, refresh))
    return diff(plan, observed, owned)


@dataclass
class StepResult:
    """What applying one step did."""

    address: str
    action: str
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)


def apply(plan: Plan, ctx: RunContext, state: State, backends: Backends,
          on_step: Callable[[Step, str], None] = lambda step, phase: None) -> list[StepResult]:
    """Apply the plan's changes in order; no-op steps contribute their recorded outputs.

    Each finished step is recorded at once, so a failure leaves exactly the finished steps applied
    and a re-run resumes at the failed one. A plan made against a state that has changed since is
    refused rather than applied blindly.
    """
    results = []
    # Lineage: training runs log the composed recipe and its fingerprint.
    ctx.outputs["_recipe"] = {"fingerprint": plan.recipe_fingerprint,
                              "yaml": yaml.safe_dump(plan.recipe, sort_keys=False)}
    with state.lock():
        _check_fresh(plan, state)
        for step in plan.steps:
            done = step.action != "delete" and state.fingerprint(step.address) == step.fingerprint
            if step.action == "no-op" or done:  # a re-applied plan resumes where it stopped
                ctx.outputs[step.address] = state.outputs(step.address)
                continue
            on_step(step, "start")
            started = time.monotonic()
            backend = backends.for_step(step)
            if step.action == "delete":
                _call(step, "delete", lambda: backend.delete(step.address, ctx))
                state.forget(step.address)
                outputs: dict[str, Any] = {}
            else:
                outputs = _call(step, "apply", lambda: backend.apply(step, ctx)) or {}
                ctx.outputs[step.address] = outputs
                state.record(step.address, step.kind, step.fingerprint, outputs)
            results.append(StepResult(step.address, step.action, time.monotonic() - started, outputs))
            on_step(step, "done")
    return results


def _check_fresh(plan: Plan, state: State) -> None:
    stale = [s.address for s in plan.steps if state.fingerprint(s.address) != s.observed_fingerprint
             and state.fingerprint(s.address) != s.fingerprint]
    if stale:
        raise PlanError(f"The plan is stale: {', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''} "
                        "changed since it was made. Make a new plan with `loom plan`.")


def _call(step: Step, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except LoomError:
        raise
    except Exception as exc:  # an engine failed: name the step, keep the cause for --debug
        raise BackendError(f"{step.address}: {what} failed: {type(exc).__name__}: {exc}") from exc
