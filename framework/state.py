"""The workspace's durable state in one file: each recipe's applied steps and records, and rollouts.

``<workspace>/state.json`` (format 2) is the one place for durable facts::

    {"format": 2,
     "recipes": {"<recipe name>": {
         "recipe_file": str, "model_id": str, "app_name": str, "feast_project": str,
         "applied_at": str,
         "steps":   {address: {"kind", "fingerprint", "outputs", "attrs", "applied_at"}},
         "serving": {address: {...}},                 # what the Serve backend deployed
         "rollout_steps": {"rollout_id", "fingerprints"}}},   # which plan steps a rollout owns
     "rollouts": {"<app name>": {...}}}               # the rollout controller's state

Each recipe owns its own section, like one Terraform state per stack: planning or applying one
recipe reads and writes only its own. Rollouts are keyed by the model's Serve application name
(``Recipe.app_name``: the model id, prefixed with ``env.project`` when set).
Append-only logs (a rollout's audit log) stay beside it as JSON lines; they are history, not state.

Every change is a transaction: an exclusive lock on ``state.lock``, a fresh read, the change, then
an atomic write (temp file, fsync, rename, fsync of the directory). Readers never see half a file.
Older layouts (format 1 ``state.json``, ``serving/state.json``, ``rollout/<model>/state.json`` and
``steps.json``) are migrated on first use and renamed ``*.migrated``.
"""

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

FORMAT = 2
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
_UPGRADED = "_upgraded"  # in memory only: the file on disk has an older format


def now_text() -> str:
    """The current UTC time as ISO text (what every ``applied_at`` holds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def empty() -> dict[str, Any]:
    """A state document with nothing applied."""
    return {"format": FORMAT, "recipes": {}, "rollouts": {}}


def recipe_section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """``doc``'s section for recipe ``name``, created empty when missing."""
    section = doc["recipes"].setdefault(name, {})
    for key in ("steps", "serving"):
        section.setdefault(key, {})
    return section


class WorkspaceState:
    """The state file of one workspace; cheap to create, reads fresh every time."""

    def __init__(self, workspace: Path | str) -> None:
        self.workspace = Path(workspace)
        self.path = self.workspace / STATE_FILE

    def read(self) -> dict[str, Any]:
        """A snapshot of the whole document (migrated first if the workspace has an old layout)."""
        if _needs_migration(self.workspace):
            with self.transaction() as doc:
                return json.loads(json.dumps(doc))
        doc = self._read_file()
        doc.pop(_UPGRADED, None)
        return doc

    def recipe(self, name: str) -> dict[str, Any]:
        """A snapshot of recipe ``name``'s section (empty when it was never applied)."""
        return recipe_section(self.read(), name)

    @contextlib.contextmanager
    def recipe_transaction(self, name: str) -> Iterator[dict[str, Any]]:
        """Recipe ``name``'s section to change in place, in one transaction (``transaction``)."""
        with self.transaction() as doc:
            yield recipe_section(doc, name)

    def rollout(self, model_id: str) -> dict[str, Any] | None:
        """A snapshot of the rollout state of ``model_id``, or None."""
        return self.read()["rollouts"].get(model_id)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """The document to change in place; written atomically when the block ends without error."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        with open(self.workspace / LOCK_FILE, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                doc = self._read_file()
                upgrade = bool(doc.pop(_UPGRADED, False)) or _needs_migration(self.workspace)
                if upgrade:
                    _migrate(self.workspace, doc)
                before = json.dumps(doc, sort_keys=True, default=str)
                yield doc
                if upgrade or json.dumps(doc, sort_keys=True, default=str) != before:
                    _write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True, default=str))
                _finish_migration(self.workspace)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_file(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return empty()
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise TypeError("not a JSON object")
        except (ValueError, TypeError) as exc:
            raise _damaged(self.path, exc) from exc
        fmt = doc.get("format")
        if fmt == 1:
            return _from_format1(doc)
        if fmt != FORMAT or not isinstance(doc.get("recipes"), dict):
            raise _damaged(self.path, ValueError(f"format {fmt!r}; this Loom reads {FORMAT}"))
        doc.setdefault("rollouts", {})
        return doc


def _damaged(path: Path, exc: Exception) -> StateError:
    return StateError(f"{path}: the state file is damaged ({exc}). Move it away and re-run "
                      "`loom plan recipe=NAME --refresh`: applied objects are re-observed from the engines.")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


# ---- migration from the layouts before format 2 ------------------------------------------------


def _legacy_files(workspace: Path) -> list[Path]:
    files = [workspace / "serving" / "state.json"]
    rollout = workspace / "rollout"
    if rollout.is_dir():
        for model in sorted(p for p in rollout.iterdir() if p.is_dir()):
            files += [model / "state.json", model / "steps.json"]
    return [f for f in files if f.is_file()]


def _needs_migration(workspace: Path) -> bool:
    return bool(_legacy_files(workspace))


def _from_format1(doc: dict[str, Any]) -> dict[str, Any]:
    """Format 1 held one recipe's steps by address; they belong to the recipe they name."""
    steps = dict(doc.get("steps") or {})
    out = {**empty(), _UPGRADED: True}
    if steps:
        section = recipe_section(out, _format1_recipe(steps))
        section["steps"] = steps
        section["applied_at"] = max((str(e.get("applied_at", "")) for e in steps.values()),
                                    default="")
    return out


def _format1_recipe(steps: dict[str, Any]) -> str:
    """The recipe a format-1 state belonged to: its dataset file is named after it."""
    path = str((steps.get("training.dataset") or {}).get("outputs", {}).get("path", ""))
    stem = Path(path).stem
    if "-" in stem:
        return stem.rsplit("-", 1)[0]
    model = (steps.get("registry.register") or {}).get("outputs", {}).get("model_name")
    return str(model or "default")


def _migrate(workspace: Path, doc: dict[str, Any]) -> None:
    """Fold the per-component files of older layouts into ``doc``."""
    serving = _read_json(workspace / "serving" / "state.json")
    if serving:
        by_model = {s.get("model_id") or name: name for name, s in doc["recipes"].items()}
        app = next((str(r.get("app")) for r in serving.values() if isinstance(r, dict)
                    and r.get("app")), None)
        name = by_model.get(app) if app else None
        name = name or (next(iter(doc["recipes"])) if len(doc["recipes"]) == 1 else "default")
        recipe_section(doc, name)["serving"].update(serving)
    rollout = workspace / "rollout"
    for model in sorted(p for p in rollout.iterdir() if p.is_dir()) if rollout.is_dir() else []:
        state = _read_json(model / "state.json")
        if state:
            doc["rollouts"].setdefault(model.name, state)
        steps = _read_json(model / "steps.json")
        if steps:
            owner = next((n for n, s in doc["recipes"].items()
                          if s.get("model_id", n) == model.name), model.name)
            recipe_section(doc, owner).setdefault("rollout_steps", steps)


def _finish_migration(workspace: Path) -> None:
    for path in _legacy_files(workspace):
        os.replace(path, path.with_name(path.name + ".migrated"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
