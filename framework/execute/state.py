"""One recipe's applied steps, read and written through the workspace state (``framework.state``)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from framework.errors import StateError
from framework.state import WorkspaceState, now_text, recipe_section

APPLY_LOCK_FILE = ".lock"
#: Step kinds several recipes of one Feast project may share; each is a Feast registry object.
SHARED_KINDS = ("feast.entity", "feast.view", "feast.service")


class State:
    """Recipe ``recipe``'s steps in the workspace: address → {kind, fingerprint, outputs, ...}.

    Every ``record`` is its own transaction on the state file, so a crash leaves the steps that
    finished recorded and nothing half-written; the next apply resumes from there. ``about`` is
    written with each record: which file the recipe came from, its model and Feast project.
    """

    def __init__(self, workspace: Path, recipe: str, about: dict[str, Any] | None = None) -> None:
        self.workspace, self.recipe = Path(workspace), recipe
        self.store = WorkspaceState(workspace)
        self.about = dict(about or {})
        self._entries: dict[str, dict[str, Any]] | None = None
        self._others: dict[str, dict[str, Any]] | None = None

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._load()
        assert self._entries is not None
        return self._entries

    def others(self) -> dict[str, dict[str, Any]]:
        """The other recipes' sections, by name (for ownership and conflict checks)."""
        if self._others is None:
            self._load()
        assert self._others is not None
        return self._others

    def _load(self) -> None:
        doc = self.store.read()
        self._entries = dict(recipe_section(doc, self.recipe)["steps"])
        self._others = {n: s for n, s in doc["recipes"].items() if n != self.recipe}

    def fingerprint(self, address: str) -> str | None:
        entry = self.entries.get(address)
        return entry["fingerprint"] if entry else None

    def outputs(self, address: str) -> dict[str, Any]:
        entry = self.entries.get(address)
        return dict(entry.get("outputs") or {}) if entry else {}

    def record(self, address: str, kind: str, fingerprint: str, outputs: dict[str, Any],
               attrs: dict[str, Any] | None = None) -> None:
        entry = {"kind": kind, "fingerprint": fingerprint, "outputs": outputs,
                 "attrs": dict(attrs or {}), "applied_at": now_text()}
        self.entries[address] = entry
        with self.store.recipe_transaction(self.recipe) as section:
            section["steps"][address] = entry
            section.update(self.about, applied_at=entry["applied_at"])

    def forget(self, address: str) -> None:
        self.entries.pop(address, None)
        with self.store.transaction() as doc:
            section = doc["recipes"].get(self.recipe)
            if section is not None:
                section["steps"].pop(address, None)

    def drop(self, app_name: str) -> None:
        """Remove the recipe's whole section and its app's finished rollout, in one transaction
        (``loom destroy`` after every step is gone; a running rollout is never dropped)."""
        self._entries = {}
        with self.store.transaction() as doc:
            doc["recipes"].pop(self.recipe, None)
            rollout = doc["rollouts"].get(app_name)
            if rollout is not None and rollout.get("status") != "running":
                del doc["rollouts"][app_name]

    def users_of(self, address: str, feast_project: str) -> list[str]:
        """Other recipes that hold the shared Feast object ``address`` of ``feast_project``."""
        if not address.startswith(SHARED_KINDS):
            return []
        return sorted(name for name, section in self.others().items()
                      if section.get("feast_project") == feast_project
                      and address in section.get("steps", {}))

    def kept_reason(self, address: str, feast_project: str) -> str | None:
        """Why deleting ``address`` keeps the Feast object (other users), or None when it goes."""
        users = self.users_of(address, feast_project)
        return f"kept in Feast: recipe {', '.join(users)} still uses it" if users else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on the workspace for the duration of an apply (of any recipe)."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        with open(self.workspace / APPLY_LOCK_FILE, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StateError(f"Another Loom command is applying to {self.workspace}; wait for it "
                                 "to finish.") from exc
            self._entries = self._others = None  # re-read under the lock: another may have applied
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
