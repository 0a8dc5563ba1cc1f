"""A circuit breaker per dependency: opens after N failures, fails fast, lets one probe through."""

from __future__ import annotations

import time
from typing import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
#: Gauge values for ``loom_circuit_state``.
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class CircuitBreaker:
    """Counts consecutive failures of one dependency (the feature store, a model version)."""

    def __init__(self, failure_threshold: int, reset_timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self.state = CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probe_out = False

    def allow(self) -> bool:
        """Whether a call may go to the dependency now; in half-open only one probe at a time."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            self.state = HALF_OPEN
            self._probe_out = False
        if self.state == HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def success(self) -> None:
        """A call succeeded: close the circuit."""
        self.state = CLOSED
        self.failures = 0
        self._probe_out = False

    def release(self) -> None:
        """A call let through was never made (the request's own input was refused): neither a
        success nor a failure; a half-open probe may go out again."""
        self._probe_out = False

    def failure(self) -> None:
        """A call failed: count it; open at the threshold, or reopen after a failed probe."""
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
            self.state = OPEN
            self._opened_at = self._clock()
            self._probe_out = False

    def snapshot(self) -> dict:
        """State for ``GET /v1/models``."""
        return {"state": self.state, "failures": self.failures}
