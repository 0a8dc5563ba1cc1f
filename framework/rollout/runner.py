"""The rollout controller actor's body: runs one model's controller, and supervises its loop.

Ray re-runs ``ControllerRunner.__init__`` when it restarts the actor, so the constructor only
resumes a saved rollout; ``begin`` starts a new one. Inside the actor, a loop that dies is
restarted from the state file, and a loop that hangs (no round for ``HUNG_S``) ends the actor's
process, so that Ray starts a fresh actor that resumes. Tests run the runner in-process.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from framework.errors import BackendError, StateError
from framework.rollout.controller import RolloutController, Superseded
from framework.rollout.health import HEARTBEAT_S
from framework.rollout.phases import RolloutSpec
from framework.rollout.state import StateStore, audit_record

#: Replicas ship samples about once a second; judge a window this long after it ends (a sample
#: arriving later is left out of its window, which costs a few samples, never a wrong verdict).
SAMPLE_LAG_S = 1.1
EXIT_GRACE_S = 2.0
#: A controller actor with no rollout to run (restarted after its rollout ended, or never begun)
#: exits after this long, freeing its name.
IDLE_EXIT_S = 30.0
#: A loop that has not come round for this long hangs in a call that never returns (a traffic
#: update may take 180 s, bounded by its own timeouts): the actor's process ends and Ray
#: starts a new one, which resumes from the state file.
HUNG_S = 300.0
#: Longest wait before a loop that died is restarted (it doubles per death from ``poll_s``).
RESTART_BACKOFF_MAX_S = 30.0
Ports = Callable[[], dict[str, Any]]


class ControllerRunner:
    """The actor's body: begins a rollout (``begin``) or resumes the saved one, and ticks it.

    Ray re-runs ``__init__`` with the same arguments when it restarts the actor, so the
    constructor only ever resumes; a new rollout begins through ``begin``.
    """

    def __init__(self, workspace: str, model_id: str, ports: Ports, poll_s: float = 0.2,
                 sample_lag_s: float = SAMPLE_LAG_S, hung_s: float = HUNG_S) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workspace, self._model_id, self._ports = workspace, model_id, ports
        self._poll_s, self._sample_lag_s, self._hung_s = poll_s, sample_lag_s, hung_s
        self._beat = time.monotonic()  # the loop's last round, for the watchdog
        self._ended = False  # the loop finished its rollout (or lost it to another)
        self._watching = False
        self.deaths = 0  # loops that died and were restarted
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
        self._beat = time.monotonic()
        threading.Thread(target=self._supervised, name="loom-rollout", daemon=True).start()
        if not self._watching:
            self._watching = True
            threading.Thread(target=self._watch, name="loom-rollout-watch", daemon=True).start()

    def _exit_if_idle(self) -> None:
        if not self._stop.wait(IDLE_EXIT_S) and self.ctl is None:
            _exit_this_actor()

    def _supervised(self) -> None:
        """Run the loop; a loop that dies is restarted from the state file, after a backoff."""
        died: Exception | None = None
        while not self._stop.is_set():
            try:
                if died is not None:
                    self._restart(died)
                self._loop()
                break
            except Superseded:
                break
            except Exception as exc:  # a bug, or failed error handling: the loop must not die of it
                died, self.deaths = exc, self.deaths + 1
                self._beat = time.monotonic()
                self._stop.wait(min(RESTART_BACKOFF_MAX_S, self._poll_s * 2 ** self.deaths))
        self._ended = True
        # Linger a moment so the reply to a command that just ended the rollout gets out first.
        if not self._stop.wait(EXIT_GRACE_S):
            _exit_this_actor()

    def _restart(self, died: Exception) -> None:
        from framework.backends.model_registry.tracking import redact_uri

        why = redact_uri(f"the controller loop died ({died.__class__.__name__}: {died})")[:1000]
        with self._lock:
            self.ctl = RolloutController.resume(
                StateStore(self._workspace, self._model_id), why=f"{why}; restart {self.deaths}",
                sample_lag_s=self._sample_lag_s, **self._ports())

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._beat = time.monotonic()
            with self._lock:
                ctl = self.ctl
                assert ctl is not None
                if ctl.done:
                    return
                try:
                    busy = ctl.tick_safely()
                except Superseded:
                    return
            if not busy:
                self._stop.wait(ctl.backoff(self._poll_s))

    def _watch(self) -> None:
        """End the actor's process when the loop hangs: Ray starts a fresh one that resumes."""
        while not self._stop.wait(min(HEARTBEAT_S, self._hung_s / 4)):
            if self._ended:
                return
            silent = time.monotonic() - self._beat
            if silent > self._hung_s:
                # Said where it can be in a few seconds: the disk may be what hangs.
                note = threading.Thread(target=self._note_hung, args=(silent,), daemon=True)
                note.start()
                note.join(5.0)
                _restart_this_actor()
                return

    def _note_hung(self, silent: float) -> None:
        try:
            store = StateStore(self._workspace, self._model_id)
            st = store.require()
            now = self.ctl.clock.now() if self.ctl is not None else time.time()
            store.audit(audit_record(st, now, "controller_hung", reason=(
                f"the controller loop did not come round for {silent:.0f} s (limit "
                f"{self._hung_s:g} s); its process ends and a new one resumes from the saved "
                "state")))
        except Exception:  # the restart matters more than the note
            pass

    def command(self, name: str, reason: str) -> dict[str, Any]:
        """Run ``promote``, ``abort`` or ``rollback`` between two ticks; returns the new state."""
        with self._lock:
            if self.ctl is None:
                raise StateError(f"no rollout of {self._model_id!r} runs; nothing to {name}.")
            return apply_command(self.ctl, name, reason).to_dict()

    def state(self) -> dict[str, Any] | None:
        """The controller's state as it holds it now (None before a rollout begins)."""
        with self._lock:
            return None if self.ctl is None else self.ctl.state.to_dict()

    def stop(self) -> None:
        """Stop ticking (the rollout stays as it is; a new actor resumes it)."""
        self._stop.set()


def apply_command(ctl: RolloutController, name: str, reason: str) -> Any:
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


def _restart_this_actor() -> None:
    """A hung controller ends its process; Ray restarts the actor, which resumes from the state."""
    import ray

    try:
        in_actor = ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    except Exception:
        in_actor = False
    if in_actor:  # never end a driver or a test that runs the runner in-process
        os._exit(1)
