"""The workspace state file: what Loom applied, by step address, with fingerprints and outputs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from framework.errors import StateError

STATE_FILE = "state.json"
LOCK_FILE = ".lock"


class State:
    """``<workspace>/state.json``: address → {kind, fingerprint, outputs, applied_at}.

    Written atomically (temp file + rename) after every applied step, so a crash leaves the steps
    that finished recorded and nothing half-written; the next apply resumes from there.
    """

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.path = workspace / STATE_FILE
        self._entries: dict[str, dict[str, Any]] | None = None

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return dict(data["steps"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.path}: the state file is damaged ({exc}). Move it away and "
                             "re-run `loom launch`; applied objects are re-observed.") from exc

    def fingerprint(self, address: str) -> str | None:
        entry = self.entries.get(address)
        return entry["fingerprint"] if entry else None

    def outputs(self, address: str) -> dict[str, Any]:
        entry = self.entries.get(address)
        return dict(entry.get("outputs") or {}) if entry else {}

    def record(self, address: str, kind: str, fingerprint: str, outputs: dict[str, Any]) -> None:
        self.entries[address] = {"kind": kind, "fingerprint": fingerprint, "outputs": outputs,
                                 "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._write()

    def forget(self, address: str) -> None:
        if self.entries.pop(address, None) is not None:
            self._write()

    def _write(self) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"format": 1, "steps": self.entries}, indent=2, sort_keys=True, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on the workspace for the duration of an apply."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        with open(self.workspace / LOCK_FILE, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StateError(f"Another Loom command is applying to {self.workspace}; wait for it "
                                 "to finish.") from exc
            self._entries = None  # re-read under the lock: another command may have applied since
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
