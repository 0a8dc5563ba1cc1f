"""The calls the CLI and the backend make on a model's detached rollout controller actor.

``start`` checks in the calling process that a rollout may begin, then creates an actor named
``loom-rollout-<model_id>`` (namespace ``loom``, lifetime detached, 0.01 CPU) and asks it to begin:
the actor itself enters the first phase and ticks from that moment on, so no window is lost to a
hand-over between processes (errors still reach the caller through ``ray.get``). ``status`` and
``wait`` read files only and work without Ray.

The actor's body is ``runner.ControllerRunner``. The controller is supervised at three levels.
Inside the actor, a loop that dies is restarted from the state file, and a loop that hangs ends
the actor's process; Ray restarts the actor (without limit), and the new one resumes from the
state file. From outside,
a running rollout whose heartbeat stopped (``health.stalled``: no actor left, or one that does
not beat) is handed to a new actor by ``supervise``, which ``wait`` calls when given the ports.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from framework.errors import BackendError, LoomError
from framework.rollout.controller import RolloutController
from framework.rollout.guard import live_slots, retire_running
from framework.rollout.health import stalled
from framework.rollout.phases import RolloutSpec
from framework.rollout.state import TERMINAL, StateStore, audit_record
from framework.rollout.runner import SAMPLE_LAG_S, ControllerRunner, Ports, apply_command
from framework.rollout.status import status

NAMESPACE = "loom"
ACTOR_CPU = 0.01
#: How many times one ``wait`` hands a stalled rollout to a new controller before it gives up.
MAX_REVIVALS = 3


def actor_name(model_id: str) -> str:
    """The controller actor's name for a model."""
    return f"loom-rollout-{model_id}"


# ---- calls from a driver (the CLI, the backend) -----------------------------------------------


def start(workspace: Path | str, model_id: str, spec: RolloutSpec, ports: Ports, *,
          supersede: bool = False, poll_s: float = 0.2,
          sample_lag_s: float = SAMPLE_LAG_S) -> dict[str, Any]:
    """Start a rollout of the app's candidate slot and hand it to the detached controller actor.

    Args:
        workspace: the Loom workspace (state and audit log live under ``rollout/<model_id>/``).
        model_id: the model and Serve application name.
        spec: the phases (``phases.spec_from_steps`` or ``spec_from_recipe``).
        ports: a picklable callable returning the controller's setter, source, promoter and clock,
            called here and again inside the actor (``functools.partial(engines.real_ports, ...)``).
        supersede: end a running rollout of this model instead of refusing.
        poll_s: how often the actor checks whether a window is due.
        sample_lag_s: how long after a window ends it is judged (replicas ship samples each second).

    Returns:
        ``status(workspace, model_id)`` after the first phase is live.

    Raises:
        StateError: a rollout of the model is running and ``supersede`` is False.
        BackendError: Ray is not connected, or the app has no candidate slot.
    """
    _require_ray()
    store = StateStore(workspace, model_id)
    deps = ports()
    _, candidate = live_slots(deps["setter"].current(), model_id)  # no candidate: say so here
    if not supersede:
        retire_running(store, candidate["version"], False, deps["clock"].now())  # raises if busy
    # The old controller (running, or idle) must not write after the new one starts, and its
    # name must be free; its rollout is marked superseded first, so the new actor does not
    # resume it.
    _stop_actor(model_id)
    if supersede:
        with store.lock():
            retire_running(store, candidate["version"], True, deps["clock"].now())
    handle = _launch(workspace, model_id, ports, poll_s, sample_lag_s)
    try:
        _call(handle.begin.remote(spec.to_dict(), supersede), model_id)
    except LoomError:
        _stop_actor(model_id)
        raise
    return status(workspace, model_id)


def ensure_controller(workspace: Path | str, model_id: str, ports: Ports,
                      poll_s: float = 0.2, sample_lag_s: float = SAMPLE_LAG_S) -> bool:
    """Start an actor for a running rollout that has none (its cluster restarted); True if started."""
    _require_ray()
    st = StateStore(workspace, model_id).load()
    if st is None or st.status in TERMINAL or _get_actor(model_id) is not None:
        return False
    _launch(workspace, model_id, ports, poll_s, sample_lag_s)
    return True


def supervise(workspace: Path | str, model_id: str, ports: Ports, poll_s: float = 0.2,
              sample_lag_s: float = SAMPLE_LAG_S) -> str | None:
    """Hand a running rollout whose controller stopped beating to a new controller actor.

    A controller is replaced when no actor runs for the rollout (its cluster restarted) or when
    its heartbeat stopped (``health.stalled``); the new one resumes from the state file. The
    replacement is audited as ``controller_revived``, with the reason.

    Returns:
        What was wrong, or None when the controller beats (or no rollout runs).
    """
    _require_ray()
    store = StateStore(workspace, model_id)
    st = store.load()
    if st is None or not st.running:
        return None
    handle = _get_actor(model_id)
    why = stalled(st, time.time()) if handle is not None else (
        "no controller actor runs for it (its cluster restarted, or its actor died)")
    if why is None:
        return None
    if handle is not None:
        _stop_actor(model_id)
    st = store.load()
    if st is None or not st.running:  # it ended meanwhile
        return None
    try:
        store.audit(audit_record(st, time.time(), "controller_revived",
                                 reason=f"{why}; a new controller resumes from the saved state"))
        # The hand-over counts as a beat: the new controller gets a whole stall limit to start.
        st.updated_at = time.time()
        store.save(st)
    except OSError:  # the new controller notes the problem in the state, and pauses
        pass
    _launch(workspace, model_id, ports, poll_s, sample_lag_s)
    return why


def promote(workspace: Path | str, model_id: str, ports: Ports,
            reason: str = "promoted by hand") -> dict[str, Any]:
    """Skip the remaining phases: the candidate becomes stable and the champion alias moves."""
    return _run_command(workspace, model_id, ports, "promote", reason)


def abort(workspace: Path | str, model_id: str, ports: Ports,
          reason: str = "aborted by hand") -> dict[str, Any]:
    """Stop the rollout: candidate weight 0 in one update; the version is not tagged."""
    return _run_command(workspace, model_id, ports, "abort", reason)


def rollback(workspace: Path | str, model_id: str, ports: Ports,
             reason: str = "rolled back by hand") -> dict[str, Any]:
    """Candidate weight 0 (or the old stable back after a promotion); the version is tagged."""
    return _run_command(workspace, model_id, ports, "rollback", reason)


def wait(workspace: Path | str, model_id: str, progress: Callable[[str], None] = print,
         poll_s: float = 0.5, timeout_s: float | None = None,
         until: Callable[[dict[str, Any]], bool] | None = None,
         ports: Ports | None = None) -> dict[str, Any]:
    """Follow the rollout from its files, printing each new decision, until it ends (or ``until``).

    A controller that stops beating is said once; with ``ports`` (and Ray connected) it is
    handed to a new controller (``supervise``), up to ``MAX_REVIVALS`` times.

    Raises:
        BackendError: ``timeout_s`` passed first (the rollout goes on in the background), or the
            controller kept stalling after ``MAX_REVIVALS`` new ones.
    """
    seen, deadline = 0, None if timeout_s is None else time.monotonic() + timeout_s
    revivals, said = 0, None
    while True:
        s = status(workspace, model_id)
        for line in s["timeline"][seen:]:
            progress(f"rollout {model_id}: {line['event']}: {line['text']}")
        seen = len(s["timeline"])
        ended = s["status"] in TERMINAL and s["weights"]["live"]  # its last update is live
        if ended or s["status"] == "none" or (until and until(s)):
            return s
        stall = (s.get("controller") or {}).get("stalled")
        if stall and ports is not None:
            if revivals >= MAX_REVIVALS:
                raise BackendError(
                    f"the rollout controller of {model_id!r} stalled again after {revivals} new "
                    f"ones: {stall}. Traffic stays as the saved state says (candidate weight "
                    f"{s['weights']['candidate_weight']}%); see `loom rollout status "
                    "recipe=NAME`, or end it with `loom rollout abort recipe=NAME`.")
            revivals += supervise(workspace, model_id, ports) is not None  # audited: the timeline says it
        elif stall and said != s["updated_at"]:
            said = s["updated_at"]
            progress(f"rollout {model_id}: controller stalled: {stall}")
        if deadline is not None and time.monotonic() > deadline:
            raise BackendError(
                f"rollout of {model_id!r} is still {s['status']} after {timeout_s:g} s; it goes on "
                "in the background. Follow it with `loom rollout status recipe=NAME`."
            )
        time.sleep(poll_s)


def _run_command(workspace: Path | str, model_id: str, ports: Ports, name: str,
                 reason: str) -> dict[str, Any]:
    from ray.exceptions import RayActorError

    _require_ray()
    handle = _get_actor(model_id)
    saved = StateStore(workspace, model_id).load()
    stall = stalled(saved, time.time()) if saved is not None else None
    if handle is not None and stall:  # it would never answer: decide here instead
        _stop_actor(model_id)
        handle = None
    if handle is not None:
        try:
            _call(handle.command.remote(name, reason), model_id, actor_errors=False)
            return status(workspace, model_id)
        except RayActorError:  # it exited meanwhile: done already, or decide here instead
            st = StateStore(workspace, model_id).load()
            if st is not None and not st.running and st.reason == reason:
                return status(workspace, model_id)
    # No live controller: the same state machine decides in this process.
    why = f"the controller stalled ({stall}); this {name} command decides in its place" \
        if stall else ""
    ctl = RolloutController.resume(StateStore(workspace, model_id), why=why, **ports())
    apply_command(ctl, name, reason)
    return status(workspace, model_id)


def _call(ref: Any, model_id: str, actor_errors: bool = True) -> Any:
    """``ray.get`` of a controller call; Loom errors raised inside come out as themselves.

    Raises:
        LoomError: what the controller raised; BackendError for anything else it raised, and
            (``actor_errors``) when the actor died before it answered.
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    from framework.backends.model_registry.tracking import redact_uri

    try:
        return ray.get(ref)
    except RayTaskError as exc:
        if isinstance(exc.cause, LoomError):
            raise exc.cause from None
        raise BackendError(redact_uri(
            f"rollout controller of {model_id!r} failed: {exc.cause}")) from exc
    except RayActorError as exc:
        if not actor_errors:
            raise
        raise BackendError(redact_uri(
            f"the rollout controller of {model_id!r} died before it answered: {exc}. See "
            "`loom rollout status recipe=NAME`.")) from exc


def _launch(workspace: Path | str, model_id: str, ports: Ports, poll_s: float,
            sample_lag_s: float) -> Any:
    import ray

    from framework.backends.ray_runtime import ON_HEAD

    cls = ray.remote(ControllerRunner)
    return cls.options(name=actor_name(model_id), namespace=NAMESPACE, lifetime="detached",
                       num_cpus=ACTOR_CPU, resources=dict(ON_HEAD), max_restarts=-1,
                       max_concurrency=4).remote(
        str(Path(workspace).resolve()), model_id, ports, poll_s, sample_lag_s)


def _get_actor(model_id: str) -> Any:
    import ray

    try:
        return ray.get_actor(actor_name(model_id), namespace=NAMESPACE)
    except ValueError:
        return None


def _stop_actor(model_id: str) -> None:
    import ray

    handle = _get_actor(model_id)
    if handle is not None:
        ray.kill(handle, no_restart=True)
        _wait_gone(model_id)


def _wait_gone(model_id: str, wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while _get_actor(model_id) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def connect(recipe: Any, workspace: Path | str) -> None:
    """Connect this process to the recipe's Ray cluster (never starts one); for CLI commands.

    Raises:
        BackendError: no cluster runs for this recipe (nothing is deployed, so nothing rolls out).
    """
    from framework.backends import ray_runtime

    if not ray_runtime.connect(recipe, Path(workspace), start=False):
        raise BackendError(
            f"No Ray cluster runs for {recipe.model_id!r} (env.ray_address or "
            f"{workspace}/ray/address), so no rollout controller either. "
            f"`loom rollout status recipe={recipe.name}` "
            "still shows the last rollout from the workspace."
        )


def _require_ray() -> None:
    import ray

    if not ray.is_initialized():
        raise BackendError(
            "The rollout controller runs on Ray, and this process is not connected to it. "
            "Deploy with `loom launch recipe=NAME` (or start the cluster with `loom up`) first."
        )
