"""The detached Ray actor that runs a model's rollout controller, and the calls the CLI makes.

``start`` checks in the calling process that a rollout may begin, then creates an actor named
``loom-rollout-<model_id>`` (namespace ``loom``, lifetime detached, 0.01 CPU) and asks it to begin:
the actor itself enters the first phase and ticks from that moment on, so no window is lost to a
hand-over between processes (errors still reach the caller through ``ray.get``). Ray restarts the
actor if its process dies; the restarted one resumes from the state file. ``status`` and ``wait``
read files only and work without Ray.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from framework.errors import BackendError, LoomError, StateError
from framework.rollout.controller import RolloutController, Superseded
from framework.rollout.guard import live_slots, retire_running
from framework.rollout.phases import RolloutSpec
from framework.rollout.state import TERMINAL, StateStore
from framework.rollout.status import status

NAMESPACE = "loom"
ACTOR_CPU = 0.01
#: Replicas ship samples about once a second; judge a window this long after it ends (a sample
#: arriving later is left out of its window, which costs a few samples, never a wrong verdict).
SAMPLE_LAG_S = 1.1
EXIT_GRACE_S = 2.0
#: A controller actor with no rollout to run (restarted after its rollout ended, or never begun)
#: exits after this long, freeing its name.
IDLE_EXIT_S = 30.0
Ports = Callable[[], dict[str, Any]]


def actor_name(model_id: str) -> str:
    """The controller actor's name for a model."""
    return f"loom-rollout-{model_id}"


class ControllerRunner:
    """The actor's body: begins a rollout (``begin``) or resumes the saved one, and ticks it.

    Ray re-runs ``__init__`` with the same arguments when it restarts the actor, so the
    constructor only ever resumes; a new rollout begins through ``begin``.
    """

    def __init__(self, workspace: str, model_id: str, ports: Ports, poll_s: float = 0.2,
                 sample_lag_s: float = SAMPLE_LAG_S) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workspace, self._model_id, self._ports = workspace, model_id, ports
        self._poll_s, self._sample_lag_s = poll_s, sample_lag_s
        self.ctl: RolloutController | None = None
        store = StateStore(workspace, model_id)
        saved = store.load()
        if saved is not None and saved.running:
            self.ctl = RolloutController.resume(store, sample_lag_s=sample_lag_s, **ports())
            self._tick_in_background()
        else:
            threading.Thread(target=self._exit_if_idle, name="loom-rollout-idle",
                             daemon=True).start()

    def begin(self, spec: dict[str, Any], supersede: bool = False) -> dict[str, Any]:
        """Start a rollout of the app's candidate slot here and tick it; returns its state.

        Raises:
            StateError: a rollout of the model is running and ``supersede`` is False.
            BackendError: the app has no candidate slot loaded.
        """
        with self._lock:
            if self.ctl is not None:
                raise BackendError(f"the controller of {self._model_id!r} already runs a rollout.")
            self.ctl = RolloutController.start(
                StateStore(self._workspace, self._model_id), RolloutSpec.from_dict(spec),
                supersede=supersede, sample_lag_s=self._sample_lag_s, **self._ports())
            self._tick_in_background()
            return self.ctl.state.to_dict()

    def _tick_in_background(self) -> None:
        threading.Thread(target=self._loop, name="loom-rollout", daemon=True).start()

    def _exit_if_idle(self) -> None:
        if not self._stop.wait(IDLE_EXIT_S) and self.ctl is None:
            _exit_this_actor()

    def _loop(self) -> None:
        ctl = self.ctl
        assert ctl is not None
        while not self._stop.is_set():
            with self._lock:
                if ctl.done:
                    break
                try:
                    busy = ctl.tick_safely()
                except Superseded:
                    break
            if not busy:
                self._stop.wait(ctl.backoff(self._poll_s))
        # Linger a moment so the reply to a command that just ended the rollout gets out first.
        if not self._stop.wait(EXIT_GRACE_S):
            _exit_this_actor()

    def command(self, name: str, reason: str) -> dict[str, Any]:
        """Run ``promote``, ``abort`` or ``rollback`` between two ticks; returns the new state."""
        with self._lock:
            if self.ctl is None:
                raise StateError(f"no rollout of {self._model_id!r} runs; nothing to {name}.")
            return _command(self.ctl, name, reason).to_dict()

    def state(self) -> dict[str, Any] | None:
        """The controller's state as it holds it now (None before a rollout begins)."""
        with self._lock:
            return None if self.ctl is None else self.ctl.state.to_dict()

    def stop(self) -> None:
        """Stop ticking (the rollout stays as it is; a new actor resumes it)."""
        self._stop.set()


def _command(ctl: RolloutController, name: str, reason: str) -> Any:
    actions = {"promote": ctl.promote_now, "abort": ctl.abort, "rollback": ctl.rollback}
    if name not in actions:
        raise BackendError(f"unknown rollout command {name!r}; use promote, abort or rollback.")
    return actions[name](reason)


def _exit_this_actor() -> None:
    """A finished controller frees its name and its CPU share."""
    import ray

    try:
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
    except Exception:  # not running as an actor (a test calling the runner in-process)
        pass


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
         until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Follow the rollout from its files, printing each new decision, until it ends (or ``until``).

    Raises:
        BackendError: ``timeout_s`` passed first; the rollout goes on in the background.
    """
    seen, deadline = 0, None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        s = status(workspace, model_id)
        for line in s["timeline"][seen:]:
            progress(f"rollout {model_id}: {line['event']}: {line['text']}")
        seen = len(s["timeline"])
        ended = s["status"] in TERMINAL and s["weights"]["live"]  # its last update is live
        if ended or s["status"] == "none" or (until and until(s)):
            return s
        if deadline is not None and time.monotonic() > deadline:
            raise BackendError(
                f"rollout of {model_id!r} is still {s['status']} after {timeout_s:g} s; it goes on "
                "in the background. Follow it with `loom rollout status recipe=NAME`."
            )
        time.sleep(poll_s)


def _run_command(workspace: Path | str, model_id: str, ports: Ports, name: str,
                 reason: str) -> dict[str, Any]:
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    from ray.exceptions import RayActorError

    _require_ray()
    handle = _get_actor(model_id)
    if handle is not None:
        try:
            _call(handle.command.remote(name, reason), model_id, actor_errors=False)
            return status(workspace, model_id)
        except RayActorError:  # it exited meanwhile: done already, or decide here instead
            st = StateStore(workspace, model_id).load()
            if st is not None and not st.running and st.reason == reason:
                return status(workspace, model_id)
    # No live controller: the same state machine decides in this process.
    ctl = RolloutController.resume(StateStore(workspace, model_id), **ports())
    _command(ctl, name, reason)
    return status(workspace, model_id)


def _call(ref: Any, model_id: str, actor_errors: bool = True) -> Any:
    """``ray.get`` of a controller call; Loom errors raised inside come out as themselves.

    Raises:
        LoomError: what the controller raised; BackendError for anything else it raised, and
            (``actor_errors``) when the actor died before it answered.
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as exc:
        if isinstance(exc.cause, LoomError):
            raise exc.cause from None
        raise BackendError(f"rollout controller of {model_id!r} failed: {exc.cause}") from exc
    except RayActorError as exc:
        if not actor_errors:
            raise
        raise BackendError(f"the rollout controller of {model_id!r} died before it answered: "
                           f"{exc}. See `loom rollout status recipe=NAME`.") from exc


def _launch(workspace: Path | str, model_id: str, ports: Ports, poll_s: float,
            sample_lag_s: float) -> Any:
    import ray

    cls = ray.remote(ControllerRunner)
    return cls.options(name=actor_name(model_id), namespace=NAMESPACE, lifetime="detached",
                       num_cpus=ACTOR_CPU, max_restarts=3, max_concurrency=4).remote(
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
