"""What the rollout controller needs from the world, as small protocols, and the real clock."""

from __future__ import annotations

import time
from typing import Any, Protocol


class Clock(Protocol):
    """Time source; tests pass a fake one that sleeps in no time."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class TrafficSetter(Protocol):
    """Reads and changes the model's Serve ``user_config`` in place (slots, weights, shadow)."""

    def set(self, user_config: dict[str, Any], surge: bool = False) -> None:
        """Make ``user_config`` live in one in-place update.

        ``surge``: the rollout is still running, so keep (or start, first) the extra replicas that
        answer while another replica is reconfigured; False drops them after the update.
        """
        ...

    def current(self) -> dict[str, Any] | None:
        """The ``user_config`` the app runs with now; None when the app is not deployed."""
        ...


class SampleSource(Protocol):
    """Per-request samples recorded by the replicas (see ``framework/serving/stats.py``)."""

    def window(self, start: float, end: float) -> list[dict[str, Any]]:
        """Samples with ``start <= ts < end``."""
        ...


class EvidenceSource(Protocol):
    """A source that counts requests instead of keeping them (Prometheus), in place of a
    ``SampleSource``: it gives each window's evidence whole (``framework/rollout/evidence.py``)."""

    #: Seconds after a window ends until its counts are complete.
    lag_s: float

    def evidence(self, start: float, end: float, candidate_version: str, stable_version: str,
                 role: str) -> Any:
        """The window's ``TallyEvidence``."""
        ...


class Promoter(Protocol):
    """The model registry side of a rollout: move the champion alias, tag a rolled-back version."""

    def promote(self, version: str) -> None:
        """Point the champion alias at ``version``."""
        ...

    def tag_rollback(self, version: str, reason: str) -> None:
        """Record on ``version`` that it was rolled back, and why."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))
