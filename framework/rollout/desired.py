"""The controller's hold on the serving app: the desired ``user_config``, making it live, owning it.

``DesiredTraffic`` is the half of ``RolloutController`` that touches Serve and the state file:
the state is written before traffic changes, a change counts from the moment it is live, and a
controller that finds another rollout (or deploy) in charge stops without writing.
"""

from __future__ import annotations

import copy
from typing import Any

from framework.rollout.ports import Clock, TrafficSetter
from framework.rollout.state import RolloutState, StateStore, audit_record
from framework.serving.control import Slots, SlotSpec, UserConfig, same


class Superseded(Exception):
    """Another rollout owns the model now; this controller stops without writing."""


class DesiredTraffic:
    """Desired and live traffic of one rollout; the subclass sets ``state``, ``store``, ``setter``,
    ``clock`` and ``_peeked`` (the window end already judged early)."""

    state: RolloutState
    store: StateStore
    setter: TrafficSetter
    clock: Clock
    _peeked: float

    def _config(self, weight: float, shadow: float, **slots: Any) -> dict[str, Any]:
        """The desired ``user_config``: this rollout's slots at ``weight`` and ``shadow``."""
        st = self.state
        base = UserConfig.parse(st.user_config)
        previous = base.slots.previous
        if "stable" in slots:  # a swap: the outgoing stable stays loaded as the fallback
            previous = slots.get("previous", base.slots.stable)
        candidate = slots.get("candidate", st.candidate)
        new = Slots(stable=SlotSpec.model_validate(slots.get("stable", st.stable)),
                    candidate=SlotSpec.model_validate(candidate) if candidate else None,
                    previous=previous)
        return base.model_copy(update={"slots": new, "candidate_weight": weight,
                                       "shadow_percent": shadow}).to_doc()

    def _set_desired(self, config: dict[str, Any]) -> None:
        st = self.state
        st.config_version += 1
        # Replicas keep per-request samples only while the rollout runs and judges them.
        st.user_config = {**config, "config_version": st.config_version,
                          "record_samples": st.running}
        st.applied = False
        self._save()
        self._reconcile()

    def _reconcile(self) -> None:
        """Make the desired config live, unless another deploy replaced this candidate."""
        st = self.state
        if st.applied:
            return
        if same(self._check_live_candidate(), st.user_config):
            st.applied = True  # already live (a controller taking over after a clean hand-over)
            self._save()
            return
        desired = st.user_config or {}
        requested_at = self.clock.now()
        self.setter.set(copy.deepcopy(desired), surge=st.running)
        live_at = self.clock.now()
        st.applied = True
        if st.running:
            # The phase's traffic is live only now: its windows and hold count from here, so a
            # slow update (a surge replica starting) never shortens the first window.
            st.phase_started_at = st.window_start = live_at
            st.accumulation = None  # samples from before were not answered under this config
            self._peeked = -1.0
        self._save()
        self._audit("traffic", config_version=st.config_version, requested_at=requested_at,
                    live_at=live_at,
                    weight=desired.get("candidate_weight"),
                    shadow_percent=desired.get("shadow_percent"))

    def _check_live_candidate(self) -> dict[str, Any]:
        """The live user_config, after checking that this rollout's candidate is still loaded."""
        current = self.setter.current()
        if current is None:
            self._lose_ownership(None)
            return {}  # not reached: _lose_ownership raises
        live = (current.get("slots") or {}).get("candidate")
        if live is not None and str(live.get("version")) != self.state.candidate_version:
            self._lose_ownership(str(live.get("version")))
        return current

    def _check_owner(self) -> None:
        on_disk = self.store.load()
        if on_disk is not None and on_disk.rollout_id != self.state.rollout_id:
            raise Superseded(f"rollout {on_disk.rollout_id} replaced {self.state.rollout_id}")
        if on_disk is not None and on_disk.status == "superseded" and self.state.running:
            raise Superseded(on_disk.reason)  # ended by a newer rollout's start

    def _lose_ownership(self, other_version: str | None) -> None:
        """Another deploy replaced the candidate (or the app is gone): stop without writing."""
        st = self.state
        if st.running:
            st.status, st.finished_at = "superseded", self.clock.now()
            st.reason = (f"the app now has candidate version {other_version}; this rollout stopped"
                         if other_version else "the serving app was deleted; this rollout stopped")
            self._audit("superseded", reason=st.reason)
        st.applied = True
        self._save()
        raise Superseded(st.reason)

    def _save(self) -> None:
        st = self.state
        self._check_owner()
        st.updated_at = self.clock.now()
        self.store.save(st)

    def _audit(self, event: str, **fields: Any) -> None:
        self.store.audit(audit_record(self.state, self.clock.now(), event, **fields))
