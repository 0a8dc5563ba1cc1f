"""Each logged version's training reference profile and contract, from the recipe's MLflow registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.backends.model_registry.profile import load_profile
from framework.compile.contract import Contract, parse
from framework.errors import BackendError


def version_references(recipe: Any, workspace: Path, versions: list[str]
                       ) -> tuple[dict[str, tuple[dict | None, Contract | None]], dict[str, str]]:
    """``{version: (profile, contract)}`` for every version asked, and ``{version: why}`` for those
    the registry does not know (deleted, or logged by another registry).

    Uses ``resolve_model``, which caches each version's files beside its booster (the replicas'
    cache for the embedded SQLite store), so a second `loom monitor` reads no artifact again.
    """
    from framework.backends.model_registry.tracking import tracking_uri
    from framework.backends.model_registry.versions import resolve_model

    uri = tracking_uri(recipe, workspace)
    found: dict[str, tuple[dict | None, Contract | None]] = {}
    missing: dict[str, str] = {}
    for version in versions:
        try:
            resolved = resolve_model(uri, recipe.model_id, version)
        except BackendError as exc:
            missing[version] = str(exc)
            continue
        found[version] = (load_profile(resolved.get("profile_path")), parse(resolved.get("contract")))
    return found, missing
