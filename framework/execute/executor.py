"""Observes and applies plans: state-backed observation, optional engine refresh, step-by-step apply."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from framework.backends.base import RunContext
from framework.compile.plan import Plan, Step
from framework.errors import BackendError, LoomError, PlanError
from framework.execute import served
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
    """``plan`` with every step's action decided against what is observed.

    Only this recipe's steps are compared and deleted: other recipes' state is read only to refuse
    a shared Feast object defined differently here, and to keep one that another recipe uses.
    """
    check_shared(plan, ctx, state)
    doc = state.store.read()
    served.check_contract(ctx.recipe, doc, state.about.get("recipe_file"))
    owned = {addr: entry["kind"] for addr, entry in state.entries.items()}
    observed = {addr: entry["fingerprint"] for addr, entry in state.entries.items()}
    observed.update(observe(plan, ctx, state, backends, refresh))
    diffed = diff(plan, observed, owned)
    diffed = diffed.model_copy(update={"steps": tuple(
        _keep_shared(s, state, ctx.recipe.project) for s in diffed.steps)})
    found = served.rejected(ctx.recipe, doc, diffed)
    diffed = served.mark_rejected(diffed, found) if found else diffed
    if not refresh and not ctx.recipe.env.ray_address and not _ray_in_process():
        from framework.backends import ray_cluster

        lost = served.serving_lost(ctx.recipe, doc, ray_cluster.status(Path(ctx.workspace)))
        diffed = served.mark_serving(diffed, lost) if lost else diffed
    return diffed


def _ray_in_process() -> bool:
    """A Ray this process already runs or joined (an embedding program, the tests' session Ray):
    the workspace head is not what serves then. Never imports Ray."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(getattr(ray, "is_initialized", lambda: False)())


def check_shared(plan: Plan, ctx: RunContext, state: State) -> None:
    """Refuse Feast objects that another recipe of the same Feast project applied differently.

    Raises:
        PlanError: naming both recipe files, the object and the fields that differ.
    """
    mine = state.about.get("recipe_file") or f"recipe {plan.recipe_name!r}"
    problems = []
    for step in plan.steps:
        for other in state.users_of(step.address, ctx.recipe.project):
            theirs = state.others()[other]["steps"][step.address]
            if theirs.get("fingerprint") == step.fingerprint:
                continue
            fields = _differing(step.attrs, theirs.get("attrs") or {})
            problems.append(
                f"{step.address} in Feast project {ctx.recipe.project!r}: {mine} and "
                f"{_recipe_file(state, other)} define it differently"
                + (f" ({'; '.join(fields)})" if fields else " (inputs differ)"))
    if problems:
        raise PlanError("Two recipes define the same Feast object differently:\n  "
                        + "\n  ".join(problems)
                        + "\nMake the definitions equal, or give one recipe its own "
                        "features.project (or another object name).")


def _recipe_file(state: State, recipe: str) -> str:
    """The file another recipe was applied from, for messages."""
    return state.others()[recipe].get("recipe_file") or f"recipe {recipe!r}"


def _differing(mine: dict[str, Any], theirs: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differing(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} here, {b!r} there")
    return out


def _keep_shared(step: Step, state: State, feast_project: str) -> Step:
    kept = state.kept_reason(step.address, feast_project) if step.action == "delete" else None
    return step.model_copy(update={"reason": f"{step.reason}; {kept}"}) if kept else step


@dataclass
class StepResult:
    """What applying one step did."""

    address: str
    action: str
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)


def apply(plan: Plan, ctx: RunContext, state: State, backends: Backends,
          on_step: Callable[[Step, str], None] = lambda step, phase: None,
          forget_only: frozenset[str] = frozenset()) -> list[StepResult]:
    """Apply the plan's changes in order; no-op steps contribute their recorded outputs.

    Each finished step is recorded at once, so a failure leaves exactly the finished steps applied
    and a re-run resumes at the failed one. A plan made against a state that has changed since is
    refused rather than applied blindly. Deleted steps of a kind in ``forget_only`` leave this
    recipe's state but keep what the engine holds (``loom destroy`` keeps registry history).
    """
    results = []
    # Lineage: training runs log the composed recipe and its fingerprint.
    ctx.outputs["_recipe"] = {"fingerprint": plan.recipe_fingerprint,
                              "yaml": yaml.safe_dump(plan.recipe, sort_keys=False)}
    ctx.plan_steps = tuple(plan.steps)
    with state.lock():
        _check_fresh(plan, state)
        plan = _replay_rejected(plan, ctx, state, backends)
        for step in plan.steps:  # served by a head that is gone: recorded, but applied again
            if step.kind.startswith(served.SERVING_KINDS) and step.action == "update" \
                    and step.reason.startswith(served.LOST):
                state.forget(step.address)
        for step in plan.steps:
            done = step.action != "delete" and state.fingerprint(step.address) == step.fingerprint
            if step.action == "no-op" or done:  # a re-applied plan resumes where it stopped
                ctx.outputs[step.address] = state.outputs(step.address)
                continue
            on_step(step, "start")
            started = time.monotonic()
            backend = backends.for_step(step)
            if step.action == "delete":
                # An object another recipe still uses leaves only this recipe's state.
                if step.kind not in forget_only and not state.users_of(step.address,
                                                                       ctx.recipe.project):
                    _call(step, "delete", lambda: backend.delete(step.address, ctx))
                state.forget(step.address)
                outputs: dict[str, Any] = {}
            else:
                outputs = _call(step, "apply", lambda: backend.apply(step, ctx)) or {}
                ctx.outputs[step.address] = outputs
                state.record(step.address, step.kind, step.fingerprint, outputs, step.attrs)
            results.append(StepResult(step.address, step.action, time.monotonic() - started, outputs))
            on_step(step, "done")
    return results


def _replay_rejected(plan: Plan, ctx: RunContext, state: State, backends: Backends) -> Plan:
    """Refuse to serve a version its latest rollout rejected, unless asked to retry it.

    With ``retry_rejected`` (``loom launch --retry-rejected``) the rejected version's serving steps
    are forgotten, so they apply again and its rollout starts afresh.

    Raises:
        PlanError: the plan would serve the rejected version again and no retry was asked for.
    """
    found = served.rejected(ctx.recipe, state.store.read(), plan)
    if found is None or not any(s.kind.startswith(served.SERVING_KINDS) and s.action != "no-op"
                                for s in plan.steps):
        return plan
    if not backends.options.get("ServeBackend", {}).get("retry_rejected"):
        raise PlanError(
            f"Version {found['version']} of '{ctx.recipe.model_id}' (this recipe's model) was "
            f"rejected by its rollout: {found['reason']}. Stable {found['stable'] or '-'} keeps "
            "serving. Change the recipe to train a new version, or roll this one out again with "
            f"`loom launch recipe={ctx.recipe.name} --retry-rejected` (and the overrides you "
            "launched with).")
    steps = []
    for step in plan.steps:
        if step.kind.startswith(served.SERVING_KINDS) and step.action != "no-op":
            state.forget(step.address)
            step = step.model_copy(update={"observed_fingerprint": None})
        steps.append(step)
    return plan.model_copy(update={"steps": tuple(steps)})


def _check_fresh(plan: Plan, state: State) -> None:
    stale = [s.address for s in plan.steps if state.fingerprint(s.address) != s.observed_fingerprint
             and state.fingerprint(s.address) != s.fingerprint]
    if stale:
        raise PlanError(f"The plan is stale: {', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''} "
                        "changed since it was made. Make a new plan with "
                        f"`loom plan recipe={plan.recipe_name} -o plan.json` (and the overrides you "
                        "planned with).")


def _call(step: Step, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except LoomError:
        raise
    except Exception as exc:  # an engine failed: name the step, keep the cause for --debug
        raise BackendError(f"{step.address}: {what} failed: {type(exc).__name__}: {exc}") from exc
