"""The rollout state machine: walks the phases, judges each interval, promotes or rolls back."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, Callable

from framework.errors import BackendError, StateError
from framework.rollout.analysis import AnalysisResult
from framework.rollout.desired import DesiredTraffic, Superseded
from framework.rollout.evidence import evidence_of
from framework.rollout.guard import live_slots, retire_running
from framework.rollout.health import HEARTBEAT_S
from framework.rollout.phases import Phase, RolloutSpec
from framework.rollout.ports import Clock, Promoter, SampleSource, TrafficSetter
from framework.rollout.state import KEEP_ANALYSES, RolloutState, StateStore

#: While quiet intervals accumulate, how often the controller counts the samples gathered since
#: (replicas ship about once a second, so counting more often finds nothing new).
PROBE_S = 1.0


class RolloutController(DesiredTraffic):
    """Moves one model's traffic through a RolloutSpec, deciding at every analysis interval.

    Pure logic: traffic changes go through ``setter``, samples come from ``source``, the registry
    through ``promoter``, time from ``clock``. State is written (``store``) before traffic changes,
    so a controller built with ``resume`` continues where a dead one stopped.

    Replicas ship samples in batches (about once a second), so a window is complete only
    ``sample_lag_s`` after it ends: a failure visible at the window's end is acted on at once,
    a pass waits for the complete window.

    An interval with fewer than ``min_requests`` candidate samples is inconclusive, and its
    samples are kept (``state.accumulation`` says since when): the next judgement covers the
    quiet intervals in a row plus the new one, and comes as soon as they hold ``min_requests``
    together, within the interval if need be. ``max_inconclusive`` quiet intervals roll back.

    A tick that fails is audited and retried; the controller then goes on from the saved state
    (a decision half made in memory is made again), and ``state.problem`` says what fails. A
    running controller writes its state at least every ``HEARTBEAT_S``: its heartbeat.
    """

    def __init__(
        self, store: StateStore, state: RolloutState, *, setter: TrafficSetter,
        source: SampleSource, promoter: Promoter, clock: Clock, sample_lag_s: float = 0.0,
    ) -> None:
        self.store, self.state = store, state
        self.setter, self.source, self.promoter, self.clock = setter, source, promoter, clock
        # A source that counts (Prometheus) says how late its windows are complete.
        self.sample_lag_s = max(sample_lag_s, float(getattr(source, "lag_s", 0.0)))
        self.spec = RolloutSpec.from_dict(state.spec)
        self._baseline: Any = None  # the stable reference for windows without stable traffic
        self._errors = 0
        self._peeked = -1.0  # the window end already judged early
        self._next_probe = -1.0  # when to count the accumulated samples again

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def start(
        cls, store: StateStore, spec: RolloutSpec, *, supersede: bool = False, **deps: Any
    ) -> "RolloutController":
        """Begin a rollout of the candidate slot the app has loaded now; enter the first phase.

        Raises:
            StateError: a rollout of this model is running and ``supersede`` is False.
            BackendError: the app is not deployed or has no candidate slot loaded.
        """
        clock: Clock = deps["clock"]
        with store.lock():
            current = deps["setter"].current()
            stable, candidate = live_slots(current, store.model_id)
            retire_running(store, candidate["version"], supersede, clock.now())
            now = clock.now()
            state = RolloutState(
                rollout_id=uuid.uuid4().hex[:12], model_id=store.model_id, spec=spec.to_dict(),
                stable=stable, candidate=candidate, started_at=now, updated_at=now,
                config_version=int(current.get("config_version", 0)), user_config=current,
                applied=True,
            )
            store.save(state)
        ctl = cls(store, state, **deps)
        ctl._audit("start", strategy=spec.strategy, stable_version=state.stable_version,
                   candidate_version=state.candidate_version, phases=spec.addresses())
        ctl._enter_phase(0)
        return ctl

    @classmethod
    def resume(cls, store: StateStore, why: str = "", **deps: Any) -> "RolloutController":
        """A controller for the saved rollout; re-applies its desired config if it is running.

        ``why``: what happened to the controller before (said in the audit line).
        """
        state = store.require()
        ctl = cls(store, state, **deps)
        if state.running:
            state.applied = False  # the dead controller may have died between save and set
            ctl._audit("resumed", phase=ctl.phase.address, reason=(
                (f"{why}; " if why else "")
                + f"controller took over at {ctl.phase.address} with {state.failures} failed "
                "analyses so far; its desired weights are made live again"))
            ctl._reconcile()
        return ctl

    # ---- the loop ---------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.spec.phases[min(self.state.phase_index, len(self.spec.phases) - 1)]

    @property
    def done(self) -> bool:
        return not self.state.running and self.state.applied

    def run(self, poll_s: float = 0.2,
            should_stop: Callable[[], bool] = lambda: False) -> RolloutState:
        """Tick until the rollout ends (or ``should_stop``); errors are audited and retried."""
        while not self.done and not should_stop():
            try:
                busy = self.tick_safely()
            except Superseded:
                break
            if not busy:
                self.clock.sleep(self.backoff(poll_s))
        return self.state

    def backoff(self, poll_s: float) -> float:
        """The wait before the next tick: ``poll_s``, doubling per consecutive error up to 10 s."""
        return min(10.0, poll_s * 2 ** min(self._errors, 6)) if self._errors else poll_s

    def tick_safely(self) -> bool:
        """``tick``, auditing engine errors instead of raising them; True when more is due now.

        Raises:
            Superseded: another rollout owns the model; the caller stops.
        """
        try:
            self.tick()
            self._healthy()
        except Superseded:
            raise
        except Exception as exc:  # an engine hiccup must not kill the controller; retry later
            self._failed(exc)
            return False
        return self._due() or not self.state.applied

    def _healthy(self) -> None:
        """After a good tick: the problem is over; beat if nothing was written for a while."""
        self._errors = 0
        if self.state.problem is not None:
            self.state.problem = None  # the audit log keeps the errors
            self._save()
        elif self.state.running and self.clock.now() - self.state.updated_at >= HEARTBEAT_S:
            self._save()

    def _failed(self, exc: Exception) -> None:
        """Audit a failed tick, go back to the saved state and note the problem there.

        Nothing here raises: with the audit log unwritable too, the problem is noted in the
        state alone, and no decision is taken (each is audited before it acts) until it can be.
        """
        from framework.backends.model_registry.tracking import redact_uri

        self._errors += 1
        error = f"{exc.__class__.__name__}: {exc}"
        if exc.__cause__ is not None:  # what the engine said, when a Loom error wraps it
            error += f" (from {exc.__cause__.__class__.__name__}: {exc.__cause__})"
        error = redact_uri(error)[:2000]
        try:
            self._audit("error", error=error, consecutive=self._errors)
        except Exception as audit_exc:
            error += (f"; the audit log could not be written either ({audit_exc.__class__.__name__}"
                      f": {redact_uri(str(audit_exc))[:500]}), so no decision is taken until it can")
        self._recover()
        since = (self.state.problem or {}).get("since", self.clock.now())
        self.state.problem = {"since": since, "error": error, "consecutive": self._errors}
        with contextlib.suppress(Exception):  # the state may be unwritable as well: retry later
            self._save()

    def _recover(self) -> None:
        """Go on from the saved state: a decision that failed half-way is taken again, whole."""
        try:
            saved = self.store.load()
        except Exception:  # unreadable for now: keep what is in memory
            return
        if saved is not None and saved.rollout_id == self.state.rollout_id:
            self.state = saved

    def tick(self) -> RolloutState:
        """Apply any pending config, then judge the current window if it is due.

        A window is judged twice at most: at its end on the samples already shipped, acting only
        on a "fail" (missing samples are a random share, so an error rate over the limit stays
        over it), and ``sample_lag_s`` later on the complete window for every verdict.
        """
        self._check_owner()
        self._reconcile()
        st = self.state
        if self._probe_due():
            return self._probe()
        if not st.running or not self._due():
            return st
        self._check_live_candidate()
        end = self._window_end()
        early = self.clock.now() < end + self.sample_lag_s
        result = self._judge(self._judged_from(), end, record=not early)
        if early:
            self._peeked = end
            if result.verdict != "fail":
                return st
            self._record(result)
        return self._decide(result, end)

    def _probe(self) -> RolloutState:
        """Judge the accumulated window early once its complete part holds ``min_requests``."""
        st, now = self.state, self.clock.now()
        self._next_probe = now + PROBE_S
        cut = now - self.sample_lag_s  # samples before it have all been shipped
        if cut <= st.window_start:
            return st
        since = self._judged_from()
        evidence = self._evidence(since, cut)
        if evidence.candidate_requests < self.spec.analysis.min_requests:
            return st
        self._check_live_candidate()
        return self._decide(self._judge(since, cut, evidence=evidence), cut)

    def _decide(self, result: AnalysisResult, end: float) -> RolloutState:
        """Act on the judgement of the window ending at ``end``; the next one starts there."""
        st, phase = self.state, self.phase
        st.window_start = end
        st.accumulation = result.accumulation
        held = end >= st.phase_started_at + phase.hold_s
        if result.verdict == "paused":  # monitoring.on_drift: pause_rollout holds the step
            st.inconclusive = 0  # judged: the quiet intervals before it do not count on
            self._save()
            return st
        if result.verdict == "fail":
            st.failures += 1
            if st.failures >= self.spec.failure_limit:
                return self._rollback("rolled_back", (
                    f"{st.failures} failed analyses (failure_limit {self.spec.failure_limit}) "
                    f"at {phase.address}, weight {phase.weight:g}%: {result.reason}"))
        elif result.verdict == "pass" and phase.gate == "pass" and held:
            return self._advance()
        st.inconclusive = st.inconclusive + 1 if result.verdict == "inconclusive" else 0
        limit = self.spec.analysis.max_inconclusive
        if phase.gate == "pass" and limit and st.inconclusive >= limit:
            return self._rollback("rolled_back", (
                f"{st.inconclusive} analyses in a row at {phase.address}, weight "
                f"{phase.weight:g}%, had too little traffic to judge even together "
                f"({result.reason}); raise the traffic or lower rollout.analysis.min_requests, "
                "or set max_inconclusive: 0 to wait"))
        if phase.gate == "time" and held:
            return self._advance()
        self._save()
        return st

    # ---- commands -------------------------------------------------------------------------

    def promote_now(self, reason: str = "promoted by hand") -> RolloutState:
        """Skip the remaining phases and promote the candidate."""
        self._require_running("promote")
        return self._promote(reason)

    def abort(self, reason: str = "aborted by hand") -> RolloutState:
        """Stop the rollout: all traffic back to stable in one update; the version is not tagged."""
        self._require_running("abort")
        return self._rollback("aborted", reason, tag=False)

    def rollback(self, reason: str = "rolled back by hand") -> RolloutState:
        """Send all traffic back to stable and tag the candidate, also after a promotion."""
        if self.state.status == "promoted":
            return self._undo_promotion(reason)
        self._require_running("roll back")
        return self._rollback("rolled_back", reason)

    # ---- decisions ------------------------------------------------------------------------

    def _enter_phase(self, index: int) -> RolloutState:
        st, now = self.state, self.clock.now()
        st.phase_index, st.phase_started_at, st.window_start = index, now, now
        st.inconclusive, st.accumulation = 0, None
        phase = self.phase
        # Decisions are logged before traffic moves, so a crash in between loses none of them.
        self._audit("step", phase=phase.address, weight=phase.weight,
                    shadow_percent=phase.shadow_percent, hold_s=phase.hold_s)
        self._set_desired(self._config(phase.weight, phase.shadow_percent))
        return st

    def _advance(self) -> RolloutState:
        if self.state.phase_index + 1 < len(self.spec.phases):
            return self._enter_phase(self.state.phase_index + 1)
        return self._promote("every phase passed")

    def _promote(self, reason: str) -> RolloutState:
        st = self.state
        try:
            self.promoter.promote(st.candidate_version)
        except Exception as exc:
            self._audit("promote_error", error=str(exc))
            raise BackendError(
                f"rollout of {st.model_id!r}: could not move the champion alias to version "
                f"{st.candidate_version}; traffic stays as it is and promotion is retried."
            ) from exc
        st.status, st.reason, st.finished_at = "promoted", reason, self.clock.now()
        self._audit("promoted", phase=self.spec.promote_address, reason=reason, weight=100)
        self._set_desired(self._config(0, 0, stable=st.candidate, candidate=None))
        return st

    def _rollback(self, status: str, reason: str, tag: bool = True) -> RolloutState:
        st = self.state
        st.status, st.reason, st.finished_at = status, reason, self.clock.now()
        self._audit(status, reason=reason, weight=0)
        self._set_desired(self._config(0, 0))  # one update: candidate weight and shadow to 0
        if tag:
            self._tag(st.candidate_version, reason)
        return st

    def _undo_promotion(self, reason: str) -> RolloutState:
        st = self.state
        self.promoter.promote(st.stable_version)
        st.status, st.reason, st.finished_at = "rolled_back", reason, self.clock.now()
        self._audit("rolled_back", reason=reason, weight=0, after_promotion=True)
        self._set_desired(self._config(0, 0, stable=st.stable, candidate=None))
        self._tag(st.candidate_version, reason)
        return st

    def _tag(self, version: str, reason: str) -> None:
        try:
            self.promoter.tag_rollback(version, reason)
        except Exception as exc:  # the rollback itself already happened; say the tag did not
            self._audit("tag_error", error=str(exc))

    def _require_running(self, verb: str) -> None:
        st = self.state
        if not st.running:
            raise StateError(
                f"rollout of {st.model_id!r} version {st.candidate_version} is {st.status}; "
                f"there is nothing to {verb}. See `loom rollout status recipe=NAME`."
            )

    # ---- analysis -------------------------------------------------------------------------

    def _window_end(self) -> float:
        st, phase = self.state, self.phase
        end = st.window_start + self.spec.interval_s
        if phase.gate == "time":
            end = min(end, st.phase_started_at + phase.hold_s)
        return end

    def _due(self) -> bool:
        if not self.state.running:
            return False
        now, end = self.clock.now(), self._window_end()
        return now >= end + self.sample_lag_s or (now >= end and self._peeked != end)

    def _probe_due(self) -> bool:
        st, now = self.state, self.clock.now()
        return (st.running and st.accumulation is not None and now >= self._next_probe
                and now < self._window_end())

    def _judged_from(self) -> float:
        """Where the next judgement's window starts: the first quiet interval, if accumulating."""
        acc = self.state.accumulation
        return float(acc["since"]) if acc else self.state.window_start

    def _evidence(self, start: float, end: float) -> Any:
        st = self.state
        return evidence_of(self.source, start, end, st.candidate_version, st.stable_version,
                           self.phase.role)

    def _judge(self, start: float, end: float, record: bool = True,
               evidence: Any = None) -> AnalysisResult:
        st = self.state
        if evidence is None:
            evidence = self._evidence(start, end)
        intervals = 1 + (int(st.accumulation["intervals"]) if st.accumulation else 0)
        result = evidence.gate(
            evidence.analyse(self.spec.analysis, window=(start, end), baseline=self._baseline,
                             intervals=intervals),
            st.candidate.get("profile_path"), self.spec.drift)
        if record:
            reference = evidence.reference(self.spec.analysis.min_requests)
            if reference is not None:  # for windows without stable traffic (at 100%)
                self._baseline = reference
            self._record(result)
        return result

    def _record(self, result: AnalysisResult) -> None:
        st = self.state
        record = {"phase": self.phase.address, "weight": self.phase.weight, **result.to_dict()}
        st.analyses = (st.analyses + [record])[-KEEP_ANALYSES:]
        self._audit("analysis", **record)
