"""Rollout state: the model's entry in the workspace state (``framework.state``) and its audit log."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from framework.errors import StateError

RUNNING = "running"
#: Statuses after which the controller does nothing more.
TERMINAL = ("promoted", "rolled_back", "aborted", "superseded")
#: Analyses kept in the state file for ``loom rollout status`` (the audit log keeps all).
KEEP_ANALYSES = 20


@dataclass
class RolloutState:
    """Everything a controller needs to resume: where it is, since when, and what it set last.

    ``user_config`` is the desired Serve ``user_config``; ``applied`` says whether it is known to be
    live. A controller writes the state before it changes traffic, so a restart re-applies the
    desired config instead of leaving weights half-set.
    """

    rollout_id: str
    model_id: str
    spec: dict[str, Any]
    stable: dict[str, Any]
    candidate: dict[str, Any]
    started_at: float
    status: str = RUNNING
    phase_index: int = 0
    phase_started_at: float = 0.0
    window_start: float = 0.0
    failures: int = 0
    inconclusive: int = 0  # analyses in a row without enough requests, in the current phase
    #: The quiet intervals being accumulated, from the latest inconclusive analysis: ``since``
    #: (where the next judgement's window starts: samples are re-read from the stats source, so
    #: a restarted controller goes on adding to them), ``until``, ``intervals``, ``n_candidate``
    #: and ``n_stable``. None when the last analysis of this phase judged (or there was none).
    accumulation: dict[str, Any] | None = None
    config_version: int = 0
    user_config: dict[str, Any] | None = None
    applied: bool = False
    reason: str = ""
    #: When the controller last wrote this state. A running controller writes it at least every
    #: ``health.HEARTBEAT_S``, so it is also the controller's heartbeat.
    updated_at: float = 0.0
    finished_at: float | None = None
    #: What keeps the controller from going on, while it retries: ``since``, ``error`` (text)
    #: and ``consecutive`` failed ticks. None while its ticks succeed.
    problem: dict[str, Any] | None = None
    analyses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def candidate_version(self) -> str:
        return str(self.candidate["version"])

    @property
    def stable_version(self) -> str:
        return str(self.stable["version"])

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RolloutState":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class StateStore:
    """One model's rollout: ``rollouts.<model_id>`` of the workspace state, and the append-only
    audit log ``<workspace>/rollout/<model_id>/audit.jsonl``."""

    def __init__(self, workspace: Path | str, model_id: str) -> None:
        from framework.state import WorkspaceState

        self.model_id = model_id
        self.workspace = WorkspaceState(workspace)
        self.dir = Path(workspace) / "rollout" / model_id
        self.state_path = self.workspace.path
        self.audit_path = self.dir / "audit.jsonl"

    def load(self) -> RolloutState | None:
        """The saved state, or None when this model never rolled out."""
        raw = self.workspace.rollout(self.model_id)
        if raw is None:
            return None
        try:
            return RolloutState.from_dict(raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise StateError(
                f"{self.state_path}: rollouts.{self.model_id} is damaged "
                f"({exc.__class__.__name__}). Check the serving app's weights with "
                "`loom rollout status recipe=NAME`, then remove that entry."
            ) from exc

    def require(self) -> RolloutState:
        """The saved state; StateError when this model never rolled out."""
        state = self.load()
        if state is None:
            raise StateError(f"{self.state_path}: no rollout of {self.model_id!r} was started.")
        return state

    def save(self, state: RolloutState) -> None:
        """Write the state in one transaction of the workspace state: never seen half-written."""
        with self.workspace.transaction() as doc:
            doc["rollouts"][self.model_id] = state.to_dict()

    def audit(self, record: dict[str, Any]) -> None:
        """Append one decision to the audit log as a JSON line, on disk before this returns.

        Credentials in URIs (a tracking URI in an error text) are redacted first.

        Raises:
            OSError: the line could not be written (the caller's decision waits for it).
        """
        from framework.backends.model_registry.tracking import redact_uri

        self.dir.mkdir(parents=True, exist_ok=True)
        clean = {k: redact_uri(v) if isinstance(v, str) else v for k, v in record.items()}
        line = json.dumps(clean, sort_keys=True, default=str) + "\n"
        created = not self.audit_path.exists()
        # One write() of a line to an O_APPEND file lands whole even with another appender.
        fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            _sync(fd)  # a decision is logged before traffic moves: the line must survive a crash
        finally:
            os.close(fd)
        if created:  # the new file's name must survive a crash too
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def read_audit(self, rollout_id: str | None = None) -> list[dict[str, Any]]:
        """Audit records in order, optionally only one rollout's; a torn last line is skipped.

        An audit log that cannot be read (none yet, or unreadable) reads as empty: `loom rollout
        status` still answers, and the controller's problem in the state says what is wrong.
        """
        try:
            lines = self.audit_path.read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rollout_id is None or rec.get("rollout_id") == rollout_id:
                out.append(rec)
        return out

    @contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock on this model's rollout, so two commands never decide at once."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _sync(fd: int) -> None:
    """fdatasync where there is one: the data and the size, not the times (cheaper than fsync)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def audit_record(state: RolloutState, ts: float, event: str, **fields: Any) -> dict[str, Any]:
    """One audit line about ``state``: when, what, and the rollout it belongs to."""
    return {"ts": ts, "event": event, "rollout_id": state.rollout_id, "model_id": state.model_id,
            "status": state.status, "candidate_version": state.candidate_version,
            "stable_version": state.stable_version, "failures": state.failures, **fields}
