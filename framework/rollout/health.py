"""Whether a rollout's controller is alive: its heartbeat in the durable state, and what a stall is.

A running controller writes its state at least every ``HEARTBEAT_S`` (``updated_at``), also when
nothing is due. Anyone reading the workspace (``loom rollout status``, ``actor.wait``) can so tell
a controller that is deciding from one that died or hangs, without Ray.
"""

from __future__ import annotations

from typing import Any

from framework.rollout.state import RolloutState

#: How often a running controller writes its state when nothing else made it write.
HEARTBEAT_S = 5.0
#: Silence after which a controller counts as stalled: 12 missed beats, well beyond a tick's
#: longest backoff (10 s) and a registry call's retries.
STALL_S = 60.0
#: The same while a traffic update is in flight (``applied`` False): Serve may take up to
#: 120 s, and 60 s more to start a surge replica, before such an update returns.
STALL_APPLYING_S = 240.0


def stall_limit(state: RolloutState) -> float:
    """How long the controller of ``state`` may stay silent before it counts as stalled."""
    return STALL_S if state.applied else STALL_APPLYING_S


def stalled(state: RolloutState, now: float) -> str | None:
    """Why the controller of a running rollout counts as stalled (None: it beats, or none runs)."""
    if not state.running:
        return None
    silent, limit = now - state.updated_at, stall_limit(state)
    if silent <= limit:
        return None
    doing = "" if state.applied else f", while making config_version {state.config_version} live"
    return f"no heartbeat from the controller for {silent:.0f} s (limit {limit:g} s{doing})"


def report(state: RolloutState, now: float) -> dict[str, Any]:
    """The controller's health for ``loom rollout status``: heartbeat, stall, current problem."""
    return {"heartbeat_at": state.updated_at, "silent_s": round(max(0.0, now - state.updated_at), 1),
            "stalled": stalled(state, now), "problem": state.problem if state.running else None}


def describe(health: dict[str, Any]) -> str | None:
    """One line about the controller for the status text; None when all is well."""
    problem = health.get("problem")
    if health.get("stalled"):
        text = f"STALLED: {health['stalled']}"
        if problem:
            text += f"; its last problem: {problem['error']}"
        return text + (". A `loom launch recipe=NAME` that follows the rollout restarts it from "
                       "the saved state, and `loom rollout abort recipe=NAME` (or rollback, "
                       "promote) decides in its place; meanwhile traffic stays as the state says")
    if problem:
        return (f"paused: {problem['consecutive']} failed tick(s) in a row since "
                f"{problem['since']:.0f}: {problem['error']}; it retries, traffic stays as it is")
    return None
