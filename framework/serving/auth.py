"""API keys: hashed in the driver, checked in replicas by hash, each scoped to model ids."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any, Iterable

from framework.serving.problems import ApiError
from framework.serving.settings import KeyRecord


def hash_key(key: str) -> str:
    """The sha256 hex digest replicas compare against (the key itself never leaves the driver)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_records(serving: Any, project_dir: Path | None = None) -> list[dict[str, Any]]:
    """Hash the recipe's ``serving.auth`` keys (secret refs and ``keys_file``) into ``KeyRecord`` dicts.

    Args:
        serving: the recipe's ``Serving`` section.
        project_dir: directory a relative ``keys_file`` resolves against.

    Raises:
        ValueError: a key's secret is not available, or the keys file is unreadable; the message
            names the recipe key and how to fix it.
    """
    records = []
    for i, entry in enumerate(serving.auth.api_keys):
        try:
            secret = entry.key.reveal()
        except (KeyError, OSError) as exc:
            raise ValueError(
                f"serving.auth.api_keys[{i}].key ({entry.name}): the key is not available from "
                f"{entry.key.where()}; "
                + (f"export {entry.key.env}=... first" if entry.key.env else "create the file")
            ) from exc
        records.append({"name": entry.name, "sha256": hash_key(secret), "models": list(entry.models)})
    if serving.auth.keys_file:
        records.extend(_file_records(serving.auth.keys_file, project_dir))
    return records


def _file_records(path_text: str, project_dir: Path | None) -> list[dict[str, Any]]:
    path = Path(path_text).expanduser()
    if not path.is_absolute() and project_dir is not None:
        path = project_dir / path
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return [{"name": str(e["name"]), "sha256": hash_key(str(e["key"])),
                 "models": list(e.get("models", ["*"]))} for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"serving.auth.keys_file: cannot read API keys from {path_text} ({type(exc).__name__}); "
            "it must be a JSON list of {\"name\", \"key\", \"models\"}"
        ) from exc


class KeyRing:
    """The keys a replica accepts, by hash."""

    def __init__(self, records: Iterable[KeyRecord], enabled: bool = True) -> None:
        self.enabled = enabled
        self._by_hash = {r.sha256: r for r in records}

    def check(self, headers: Any, model_id: str | None) -> str:
        """The key holder's name; ``ApiError`` 401 without a valid key, 403 when out of scope."""
        holder = self.authenticate(headers)
        self.authorize(holder, model_id)
        return holder.name if holder is not None else "anonymous"

    def authenticate(self, headers: Any) -> KeyRecord | None:
        """The presented key's record (None with auth off); ``ApiError`` 401 without a valid key.

        Hashes the key once per request: ``authorize`` then checks a model against the record.
        """
        if not self.enabled:
            return None
        presented = _presented_key(headers)
        if presented is None:
            raise ApiError(401, "An API key is required: send 'Authorization: Bearer <key>' "
                                "or 'X-API-Key: <key>'.", headers={"WWW-Authenticate": "Bearer"})
        record = self._lookup(hash_key(presented))
        if record is None:
            raise ApiError(401, "The API key is not valid.", headers={"WWW-Authenticate": "Bearer"})
        return record

    def authorize(self, holder: KeyRecord | None, model_id: str | None) -> None:
        """``ApiError`` 403 when ``holder`` (from ``authenticate``) may not call ``model_id``."""
        if holder is not None and model_id is not None and not _in_scope(holder, model_id):
            raise ApiError(403, f"This API key may not call model '{model_id}'.")

    def _lookup(self, digest: str) -> KeyRecord | None:
        # Constant-time comparison so response timing does not leak hash prefixes.
        found = None
        for known, record in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                found = record
        return found


def _presented_key(headers: Any) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def _in_scope(record: KeyRecord, model_id: str) -> bool:
    return "*" in record.models or model_id in record.models
