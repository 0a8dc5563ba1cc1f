"""One rollout per model: refuse a second one, or mark the running one superseded when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.errors import BackendError, StateError
from framework.rollout.state import RUNNING, StateStore


def check_can_start(workspace: Path | str, model_id: str, version: str,
                    supersede: bool = False) -> None:
    """Raise unless a rollout of ``version`` may start; call it before deploying a new candidate.

    ``serving.deploy`` replaces the candidate slot, so this check belongs before it: afterwards a
    running controller would find its candidate gone and stop as superseded.

    Raises:
        StateError: a rollout of another version of ``model_id`` is running and ``supersede`` is
            False.
    """
    old = StateStore(workspace, model_id).load()
    if old is not None and old.status == RUNNING and not supersede \
            and old.candidate_version != str(version):
        raise _busy(model_id, old, version)


def retire_running(store: StateStore, new_version: str, supersede: bool, now: float) -> None:
    """Refuse a second rollout of a model, or mark the running one superseded when asked to."""
    old = store.load()
    if old is None or old.status != RUNNING:
        return
    if not supersede:
        raise _busy(store.model_id, old, new_version)
    old.status, old.finished_at = "superseded", now
    old.reason = f"superseded by a rollout of version {new_version}"
    store.save(old)
    store.audit({"ts": now, "event": "superseded", "rollout_id": old.rollout_id,
                 "model_id": old.model_id, "candidate_version": old.candidate_version,
                 "reason": old.reason})


def _busy(model_id: str, old: Any, new_version: str) -> StateError:
    return StateError(
        f"a rollout of {model_id!r} version {old.candidate_version} is running "
        f"(phase {old.phase_index + 1}, {old.failures} failed analyses); starting one for "
        f"version {new_version} would leave two controllers fighting over the weights. Wait "
        f"for it (`loom rollout status recipe=NAME`), stop it (`loom rollout abort recipe=NAME`), "
        "or supersede it (`loom launch recipe=NAME --supersede`)."
    )


def live_slots(current: dict[str, Any] | None, model_id: str) -> tuple[dict, dict]:
    """(stable, candidate) slots of the app's live user_config; both must be loaded."""
    slots = (current or {}).get("slots") or {}
    if not slots.get("stable") or not slots.get("candidate"):
        raise BackendError(
            f"serving app {model_id!r}: a rollout needs the stable and the candidate version "
            "loaded side by side, but the app's user_config has "
            f"stable={_version(slots.get('stable'))}, candidate={_version(slots.get('candidate'))}. "
            "Apply the serving.deploy step first (`loom launch recipe=NAME` does)."
        )
    return dict(slots["stable"]), dict(slots["candidate"])


def _version(slot: dict[str, Any] | None) -> str:
    return "none" if not slot else str(slot.get("version"))
