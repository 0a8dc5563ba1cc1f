"""A cluster-wide lock around read-modify-write of Serve's declarative config.

Serve takes the declarative config whole (every application at once), so changing one app means
reading all of them, editing one and writing all back. Two writers at once (two models' rollout
controllers, a deploy beside a rollout) would each write back the other's old state: a lost
update. Every Loom writer holds this lock from its read to its write, so each change lands on the
latest config. The lock is a small detached actor (``loom-serve-config-lock`` in namespace
``loom``, no CPU) with a lease: a holder that dies frees it after ``LEASE_S``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

from framework.errors import BackendError

NAME = "loom-serve-config-lock"
NAMESPACE = "loom"
#: Longest a holder keeps the lock without renewing it: read + write take well under a second.
LEASE_S = 30.0
#: How long a writer waits for the lock before giving up with an error.
WAIT_S = 120.0


class _Lock:
    """The actor: one holder at a time, each with a lease."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.until = 0.0

    def acquire(self, token: str, lease_s: float) -> bool:
        now = time.time()
        if self.holder in (None, token) or now > self.until:
            self.holder, self.until = token, now + lease_s
            return True
        return False

    def release(self, token: str) -> None:
        if self.holder == token:
            self.holder = None


def _actor() -> object:
    import ray

    from framework.backends.ray_runtime import ON_HEAD

    return ray.remote(_Lock).options(name=NAME, namespace=NAMESPACE, lifetime="detached",
                                     get_if_exists=True, num_cpus=0, max_restarts=-1,
                                     resources=dict(ON_HEAD)).remote()


@contextlib.contextmanager
def held(wait_s: float = WAIT_S, lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the lock for the block (writers never nest, so it is not re-entrant).

    Raises:
        BackendError: another writer held it for longer than ``wait_s``.
    """
    import ray

    lock, token = _actor(), uuid.uuid4().hex
    deadline, pause = time.monotonic() + wait_s, 0.005
    while not ray.get(lock.acquire.remote(token, lease_s)):
        if time.monotonic() > deadline:
            raise BackendError(f"Another Loom command held the Serve config lock ({NAME}) for "
                               f"more than {wait_s:g} s; retry, or check `loom status`.")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    try:
        yield
    finally:
        ray.get(lock.release.remote(token))
