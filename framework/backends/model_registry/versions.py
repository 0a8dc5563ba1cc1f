"""Registered model versions: register, list, show, promote (champion alias), resolve for serving."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.backends.model_registry.tracking import (TAG_ADDRESS, TAG_FINGERPRINT, client_for, redact_uri,
                                                        tracking_uri)
from framework.errors import BackendError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from framework.backends.base import RunContext

MODEL_FILE = "model.ubj"


def loom_versions(client: "MlflowClient", name: str) -> list[Any]:
    """Every version of registered model ``name``, newest first ([] when the model does not exist)."""
    versions = client.search_model_versions(f"name='{name}'")
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def version_with_tag(client: "MlflowClient", name: str, key: str, value: str) -> Any | None:
    """The newest version of ``name`` whose tag ``key`` equals ``value``."""
    for version in loom_versions(client, name):
        if version.tags.get(key) == value:
            return version
    return None


def register_version(client: "MlflowClient", name: str, model_uri: str, run_id: str,
                     tags: dict[str, str]) -> Any:
    """Create version of ``name`` from a logged model (creating the registered model on first use)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, tags={"loom.managed": "true"},
                                       description="Registered by Loom.")
    # A logged model's URI (models:/m-...) names its model id; an MLflow server wants it given
    # as model_id too (the embedded store does not check).
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    return client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags,
                                       model_id=model_id)


def _client(ctx: "RunContext") -> "MlflowClient":
    return client_for(tracking_uri(ctx.recipe, Path(ctx.workspace)))


def _get(client: "MlflowClient", name: str, version_or_alias: str) -> Any:
    from mlflow.exceptions import MlflowException

    ref = str(version_or_alias)
    try:
        if ref.isdigit():
            return client.get_model_version(name, ref)
        return client.get_model_version_by_alias(name, ref)
    except MlflowException as exc:
        raise BackendError(
            f"Model '{name}' has no version or alias '{ref}' in the registry. "
            f"See `loom registry list recipe=NAME` for its versions and aliases."
        ) from exc


def describe(client: "MlflowClient", version: Any, with_run: bool = False) -> dict[str, Any]:
    """A JSON-able summary of a model version (aliases, fingerprint, run, test metrics)."""
    full = client.get_model_version(version.name, version.version)
    info: dict[str, Any] = {
        "model_name": full.name, "version": str(full.version), "aliases": sorted(full.aliases or []),
        "run_id": full.run_id, "model_uri": f"models:/{full.name}/{full.version}",
        "created_ms": full.creation_timestamp, "fingerprint": full.tags.get(TAG_FINGERPRINT),
        "status": full.status,
    }
    if with_run and full.run_id:
        run = client.get_run(full.run_id)
        info["metrics"] = {k[5:]: v for k, v in run.data.metrics.items() if k.startswith("test_")}
        info["params"] = dict(run.data.params)
        info["lineage"] = {k: v for k, v in run.data.tags.items() if k.startswith("loom.")}
    return info


def list_versions(ctx: "RunContext") -> list[dict[str, Any]]:
    """Versions of the recipe's model, newest first, with aliases and metrics (``loom registry list``)."""
    client = _client(ctx)
    return [describe(client, v, with_run=True) for v in loom_versions(client, ctx.recipe.model_id)]


def show_version(ctx: "RunContext", version: str) -> dict[str, Any]:
    """One version (number or alias) with its metrics, params and lineage tags (``loom registry show``)."""
    client = _client(ctx)
    return describe(client, _get(client, ctx.recipe.model_id, version), with_run=True)


def promote(ctx: "RunContext", version: str) -> dict[str, Any]:
    """Move ``registry.champion_alias`` to ``version`` (number or alias); returns old and new champion."""
    from mlflow.exceptions import MlflowException

    client = _client(ctx)
    name, alias = ctx.recipe.model_id, ctx.recipe.registry.champion_alias
    target = _get(client, name, version)
    try:
        previous = client.get_model_version_by_alias(name, alias).version
    except MlflowException:  # no champion yet
        previous = None
    client.set_registered_model_alias(name, alias, target.version)
    return {"model_name": name, "alias": alias, "version": str(target.version),
            "previous": str(previous) if previous is not None else None}


def resolve_model(tracking_uri: str, model_name: str, version_or_alias: str,
                  dst_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Find a registered version and a local copy of its UBJ booster (downloaded if needed).

    Args:
        tracking_uri: the MLflow tracking/registry URI.
        model_name: registered model name (the recipe's model id).
        version_or_alias: "3", or an alias such as "champion" / "candidate".
        dst_dir: where to put the model files; default a per-version cache next to a SQLite store,
            else a fresh temp dir.

    Returns:
        ``{"model_name", "version", "model_uri", "run_id", "model_path", "aliases", "contract",
        "profile_path"}`` (the last two None for a version whose run did not log them).
    """
    import mlflow.artifacts

    client = client_for(tracking_uri)  # no progress bars: Loom prints its own
    version = _get(client, model_name, version_or_alias)
    target = Path(dst_dir) if dst_dir else _cache_dir(tracking_uri, model_name, str(version.version))
    model_path = target / MODEL_FILE
    if not model_path.is_file():
        target.mkdir(parents=True, exist_ok=True)
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{model_name}/{version.version}", dst_path=str(target))
        except Exception as exc:  # MlflowException, OSError, network errors
            raise BackendError(redact_uri(f"Could not download model '{model_name}' version "
                                          f"{version.version} from {tracking_uri}: {exc}")) from exc
    if not model_path.is_file():
        raise BackendError(f"Model '{model_name}' version {version.version} has no {MODEL_FILE}: "
                           "Loom serves XGBoost UBJ models only (never pickle).")
    return {"model_name": model_name, "version": str(version.version),
            "model_uri": f"models:/{model_name}/{version.version}", "run_id": version.run_id,
            "model_path": str(model_path), "aliases": sorted(version.aliases or []),
            "contract": _contract(tracking_uri, version.run_id, target),
            "profile_path": reference_profile_path(tracking_uri, version.run_id, target)}


def _contract(uri: str, run_id: str | None, target: Path) -> dict[str, Any] | None:
    """The version's contract (``loom/contract.json`` of its run), cached beside its booster.

    None for a version trained before contracts existed.
    """
    import json

    from framework.compile.contract import CONTRACT_FILE

    path = _run_file(uri, run_id, target, CONTRACT_FILE)
    return json.loads(path.read_text(encoding="utf-8")) if path is not None else None


def reference_profile_path(uri: str, run_id: str | None, target: Path) -> str | None:
    """The local path of the version's training reference profile (``loom/reference_profile.json``
    of its run), cached beside its booster: the replicas bin live traffic in its bins."""
    from framework.backends.model_registry.profile import PROFILE_FILE

    path = _run_file(uri, run_id, target, PROFILE_FILE)
    return str(path) if path is not None else None


def download_run_file(uri: str, run_id: str, target: Path, name: str) -> Path | None:
    """``target/name`` from ``loom/<name>`` of the run (kept if already there); None when the run
    has no such artifact."""
    target.mkdir(parents=True, exist_ok=True)
    return _run_file(uri, run_id, target, name)


def log_run_files(uri: str, run_id: str, paths: list[Path]) -> None:
    """Log ``paths`` under ``loom/`` of a finished run (beside its model and profile).

    Raises:
        BackendError: MLflow refused (the message has no credentials of the URI).
    """
    client = client_for(uri)
    try:
        for path in paths:
            client.log_artifact(run_id, str(path), "loom")
    except Exception as exc:  # MlflowException, OSError, network errors
        raise BackendError(redact_uri(f"Could not log {', '.join(p.name for p in paths)} to MLflow "
                                      f"run {run_id} at {uri}: {exc}")) from exc


def _run_file(uri: str, run_id: str | None, target: Path, name: str) -> Path | None:
    """``target/name``, downloaded from ``loom/<name>`` of the run when missing; None when the run
    has no such artifact."""
    import mlflow.artifacts

    path = target / name
    if not path.is_file() and run_id:
        try:
            got = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"loom/{name}", dst_path=str(target / "run"),
                tracking_uri=uri)
            Path(got).replace(path)
        except Exception:  # MlflowException, OSError: nothing logged under that name
            return None
    return path if path.is_file() else None


def _cache_dir(uri: str, name: str, version: str) -> Path:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent / "model_cache" / name / version
    return Path(tempfile.mkdtemp(prefix=f"loom-{name}-{version}-"))


def address_versions(client: "MlflowClient", name: str, address: str) -> list[Any]:
    """Versions Loom registered for step ``address``."""
    return [v for v in loom_versions(client, name) if v.tags.get(TAG_ADDRESS) == address]
