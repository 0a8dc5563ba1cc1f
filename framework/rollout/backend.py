"""``RolloutBackend``: applies the ``rollout.step`` steps of canary and blue-green rollouts.

The first rollout step starts the controller for the whole sequence; every step's apply then waits
(unless ``wait=False``, i.e. ``loom launch --detach``) until the controller has passed that step.
Which steps belong to which rollout is kept in the recipe's ``rollout_steps`` in the workspace state.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from framework.backends.base import RunContext
from framework.compile.plan import Step
from framework.errors import BackendError, PlanError
from framework.rollout.phases import RolloutSpec, spec_from_recipe
from framework.rollout.state import TERMINAL, StateStore
from framework.spec.rollout import BlueGreen, Canary


NOTHING_TO_ROLL_OUT = "nothing to roll out"


class RolloutBackend:
    """Progressive rollouts (strategies canary and blue_green) driven by the controller actor.

    Args:
        wait: block in ``apply`` until the controller has passed each step, printing progress.
        supersede: end a running rollout of the same model instead of refusing to start.
        timeout_s: longest wait per step (None: as long as it takes); the rollout goes on.
        ports: picklable factory of the controller's ports; default the real engines.
    """

    kinds: ClassVar[tuple[str, ...]] = ("rollout.step",)

    def __init__(self, wait: bool = True, supersede: bool = False, timeout_s: float | None = None,
                 poll_s: float = 0.5, ports: Any = None) -> None:
        self.wait, self.supersede, self.timeout_s, self.poll_s = wait, supersede, timeout_s, poll_s
        self.ports = ports

    def observe(self, step: Step, ctx: RunContext) -> str | None:
        """The step's fingerprint while its rollout runs or after it promoted, else None.

        A rolled-back, aborted or superseded rollout did not reach the plan's target state, so
        the plan shows its steps again; applying them starts a new rollout of the version.
        """
        store = StateStore(ctx.workspace, ctx.recipe.app_name)
        state, steps = store.load(), _load_steps(store, ctx.recipe.name)
        if state is None or steps.get("rollout_id") != state.rollout_id:
            return None
        if state.status not in ("running", "promoted"):
            return None
        return steps["fingerprints"].get(step.address)

    def apply(self, step: Step, ctx: RunContext) -> dict[str, Any]:
        """Start the rollout (first step) or follow it (later steps); outputs its status."""
        strategy = step.attrs.get("strategy")
        if strategy not in ("canary", "blue_green"):
            raise BackendError(f"{step.address}: strategy {strategy!r} is applied by the serving "
                               "backend, not the rollout controller.")
        store = StateStore(ctx.workspace, ctx.recipe.app_name)
        deploy = ctx.upstream(step, "serving.deploy")
        if any(d.startswith("serving.deploy") for d in step.depends_on):
            started = self._start(step, ctx, store, deploy)
            if started is not None:
                return started
        previous = ctx.upstream(step, "rollout.")
        if previous.get("status") == NOTHING_TO_ROLL_OUT:
            return previous
        state = store.load()
        if state is None:
            raise PlanError(f"{step.address}: no rollout was started for this model; "
                            "apply the plan from its first rollout step.")
        _record_step(store, ctx.recipe.name, state.rollout_id, step)
        if self.wait:
            return self._wait_for(step, ctx, store)
        return _outputs(store, step)

    def delete(self, address: str, ctx: RunContext) -> None:
        """Forget the step; a running rollout is aborted (candidate weight 0) first."""
        from framework.rollout import actor

        store = StateStore(ctx.workspace, ctx.recipe.app_name)
        state = store.load()
        steps = _load_steps(store, ctx.recipe.name)
        # Only a rollout this step belongs to is aborted: a new one may already run beside it.
        owned = state is not None and steps.get("rollout_id") == state.rollout_id \
            and address in steps.get("fingerprints", {})
        if owned and state.running:
            actor.abort(ctx.workspace, ctx.recipe.app_name, self._ports(ctx),
                        reason=f"{address} deleted from the plan")
        steps.get("fingerprints", {}).pop(address, None)
        _save_steps(store, ctx.recipe.name, steps)

    # ---- internals ---------------------------------------------------------------------------

    def _start(self, step: Step, ctx: RunContext, store: StateStore,
               deploy: dict[str, Any]) -> dict[str, Any] | None:
        from framework.rollout import actor

        if "stable_version" not in deploy:  # serving.deploy was found applied, not applied now
            actor.connect(ctx.recipe, ctx.workspace)
            deploy = _live_versions(ctx.recipe.app_name)
        if not deploy.get("stable_version") or not deploy.get("candidate_version"):
            # First deploy (the new version is already stable) or nothing new: nothing to move.
            # The stable version is what production serves, so it is the champion.
            stable = deploy.get("stable_version")
            if stable:
                self._ports(ctx)()["promoter"].promote(str(stable))
            ctx.progress(f"{step.address}: no candidate beside a stable version; nothing to roll out "
                         f"(version {stable} serves all traffic and is the champion)")
            return {"status": NOTHING_TO_ROLL_OUT, "stable_version": stable}
        actor.connect(ctx.recipe, ctx.workspace)
        saved = store.load()
        if (saved is not None and saved.running and not self.supersede
                and saved.candidate_version == str(deploy["candidate_version"])
                and saved.stable_version == str(deploy["stable_version"])
                and actor.ensure_controller(ctx.workspace, ctx.recipe.app_name, self._ports(ctx))):
            # The same rollout, its controller gone with its cluster: a new one goes on from the
            # saved state. (With a controller alive, starting it again is refused below.)
            ctx.progress(f"{step.address}: the {RolloutSpec.from_dict(saved.spec).strategy} rollout "
                         f"of version {saved.candidate_version} against {saved.stable_version} "
                         f"resumes at step {saved.phase_index + 1} from the saved state, with a new "
                         "controller")
            _save_steps(store, ctx.recipe.name, {"rollout_id": saved.rollout_id,
                                                 "fingerprints": {}})
            return None
        spec = _spec(step, ctx)
        ctx.progress(f"{step.address}: starting a {spec.strategy} rollout of version "
                     f"{deploy['candidate_version']} against {deploy['stable_version']}")
        actor.start(ctx.workspace, ctx.recipe.app_name, spec, self._ports(ctx),
                    supersede=self.supersede)
        _save_steps(store, ctx.recipe.name,
                    {"rollout_id": store.require().rollout_id, "fingerprints": {}})
        return None

    def _wait_for(self, step: Step, ctx: RunContext, store: StateStore) -> dict[str, Any]:
        from framework.rollout import actor

        spec = RolloutSpec.from_dict(store.require().spec)
        index = spec.step_index(step.address)
        # With the ports, a controller that stops beating meanwhile is handed to a new one.
        final = actor.wait(ctx.workspace, ctx.recipe.app_name, ctx.progress, self.poll_s,
                           self.timeout_s, until=lambda s: _passed(s, index),
                           ports=self._ports(ctx))
        if final["status"] == "rolled_back":
            # The controller tags the version too, just after its rollback is live; tagging here
            # as well means the version is marked rejected before this command returns.
            with contextlib.suppress(BackendError):
                self._ports(ctx)()["promoter"].tag_rollback(str(final["candidate_version"]),
                                                            str(final["reason"]))
        if final["status"] in TERMINAL and final["status"] != "promoted":
            raise BackendError(
                f"{step.address}: the rollout of {ctx.recipe.app_name} version "
                f"{final['candidate_version']} was {final['status'].replace('_', ' ')}: "
                f"{final['reason']}. Stable version {final['stable_version']} serves all traffic; "
                f"see `loom rollout status recipe={ctx.recipe.name}`."
            )
        return _outputs(store, step)

    def _ports(self, ctx: RunContext) -> Any:
        if self.ports is not None:
            return self.ports
        from framework.rollout.engines import ports_for

        return ports_for(ctx.recipe, ctx.workspace)


def _live_versions(model_id: str) -> dict[str, Any]:
    from framework.rollout.engines import ServeTraffic

    slots = (ServeTraffic(model_id).current() or {}).get("slots") or {}
    return {"stable_version": (slots.get("stable") or {}).get("version"),
            "candidate_version": (slots.get("candidate") or {}).get("version")}


def _spec(step: Step, ctx: RunContext) -> RolloutSpec:
    """The rollout's phases from the plan's ``rollout.step`` steps (the compiler wrote them).

    Without the plan (a backend called directly) the same compiler function gives them from the
    recipe, so there is one author either way.
    """
    from framework.rollout.phases import spec_from_steps

    steps = [s for s in ctx.plan_steps if s.kind == "rollout.step" and s.action != "delete"]
    if steps:
        return spec_from_steps(steps)
    rollout = ctx.recipe.rollout
    if not isinstance(rollout, (Canary, BlueGreen)):
        raise BackendError(f"{step.address}: rollout.strategy {rollout.strategy!r} has no "
                           "controller.")
    return spec_from_recipe(rollout)


def _passed(s: dict[str, Any], index: int) -> bool:
    """Whether the controller is past phase ``index`` (0-based; len(phases) is promotion)."""
    return s["status"] == "running" and s["phase"]["index"] - 1 > index


def _outputs(store: StateStore, step: Step) -> dict[str, Any]:
    st = store.require()
    cfg = st.user_config or {}
    return {"rollout_id": st.rollout_id, "status": st.status, "phase_index": st.phase_index,
            "candidate_version": st.candidate_version, "stable_version": st.stable_version,
            "candidate_weight": cfg.get("candidate_weight"), "step": step.address}


def _load_steps(store: StateStore, recipe: str) -> dict[str, Any]:
    steps = store.workspace.recipe(recipe).get("rollout_steps")
    return steps if isinstance(steps, dict) else {"fingerprints": {}}


def _save_steps(store: StateStore, recipe: str, steps: dict[str, Any]) -> None:
    with store.workspace.recipe_transaction(recipe) as section:
        section["rollout_steps"] = steps


def _record_step(store: StateStore, recipe: str, rollout_id: str, step: Step) -> None:
    steps = _load_steps(store, recipe)
    if steps.get("rollout_id") != rollout_id:
        steps = {"rollout_id": rollout_id, "fingerprints": {}}
    steps["fingerprints"][step.address] = step.fingerprint
    _save_steps(store, recipe, steps)
