"""The generated Feast repo in ``<workspace>/feast/<project>/``: config, CLI definitions, the store."""

from __future__ import annotations

import inspect
import json
import os
import pprint
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.errors import BackendError

if TYPE_CHECKING:
    from framework.spec import Recipe

REPO_DIR = "feast"
REGISTRY_FILE = "registry.db"
STATE_FILE = "loom_objects.json"
DEFINITIONS_FILE = "loom_definitions.py"
#: Where the feast CLI and serving replicas read a Redis password given as a file secret.
REDIS_PASSWORD_ENV = "LOOM_REDIS_PASSWORD"
_KINDS = ("entities", "sources", "views", "services")


def repo_dir(workspace: Path, project: str) -> Path:
    """``<workspace>/feast/<project>``: the feature repo of one recipe (the `feast` CLI runs here).

    One directory and one registry per project, because recipes may share a workspace while a
    ``feature_store.yaml`` names one project and a Feast file registry keeps one infra record for
    all its projects (a shared registry makes `feast plan` in one repo drop the other's tables).
    """
    return Path(workspace) / REPO_DIR / project


def registry_path(workspace: Path, project: str) -> Path:
    """``<workspace>/feast/<project>/registry.db``: the project's Feast registry."""
    return repo_dir(workspace, project) / REGISTRY_FILE


def config_dict(recipe: "Recipe", workspace: Path, for_file: bool = False) -> dict[str, Any]:
    """The ``feature_store.yaml`` content; paths relative to the repo dir.

    Args:
        recipe: the validated recipe.
        workspace: the workspace directory.
        for_file: True for the YAML written to disk: a Redis password stays an ``${ENV_VAR}``
            reference (Feast expands it when it reads the file) instead of its value.
    """
    repo = repo_dir(workspace, recipe.project).resolve()
    online = recipe.features.store.online
    if online.type == "sqlite":
        # Relative to the repo in both forms, so the table paths Feast records in the registry's
        # infra agree between Loom and the CLI.
        online_cfg: dict[str, Any] = {
            "type": "sqlite", "path": os.path.relpath(Path(workspace).resolve() / online.path, repo)}
    else:
        online_cfg = {"type": "redis", "connection_string": _redis_connection(online, for_file)}
    return {
        "project": recipe.project,
        "provider": "local",
        "registry": registry_config(recipe, repo, for_file),
        "online_store": online_cfg,
        "offline_store": {"type": recipe.features.store.offline.type},
        "entity_key_serialization_version": 3,
    }


def registry_config(recipe: "Recipe", repo: Path, for_file: bool = False) -> dict[str, Any]:
    """Feast's ``registry`` setting: the project's file in the repo, or the recipe's SQL registry
    (``features.store.registry``), which every node of a cluster reaches."""
    url = recipe.features.store.registry
    if not url:
        return {"registry_type": "file", "path": REGISTRY_FILE if for_file else str(repo / REGISTRY_FILE)}
    # Definitions change at deploys only; replicas resolve their feature service once at start.
    return {"registry_type": "sql", "path": url, "cache_ttl_seconds": 60,
            "sqlalchemy_config_kwargs": {"pool_pre_ping": True}}


def has_registry(recipe: "Recipe", workspace: Path) -> bool:
    """Whether the project's registry may hold objects: its file exists, or it is a SQL registry
    (whose tables Feast creates on first use)."""
    return bool(recipe.features.store.registry) or registry_path(workspace, recipe.project).exists()


def inline_config(recipe: "Recipe", workspace: Path) -> dict[str, Any]:
    """``feature_store.yaml`` as replicas on any node read it from their args: no path of this
    machine inside (a SQLite online store keeps its absolute path: a loopback cluster only) and a
    Redis password as the ``${VAR}`` the replica's environment expands."""
    config = config_dict(recipe, workspace, for_file=True)
    if config["online_store"]["type"] == "sqlite":
        config["online_store"]["path"] = str(Path(workspace).resolve() / recipe.features.store.online.path)
    return config


def _redis_connection(online: Any, for_file: bool) -> str:
    conn = online.connection_string
    if online.password is None:
        return conn
    if for_file:
        # Never write the secret: Feast expands ${VAR} when it reads feature_store.yaml.
        return f"{conn},password=${{{online.password.env or REDIS_PASSWORD_ENV}}}"
    try:
        return f"{conn},password={online.password.reveal()}"
    except (KeyError, OSError) as exc:
        raise BackendError(
            "features.store.online.password: the Redis password is not available "
            f"({online.password.where()}). Export the variable or create the file, then retry."
        ) from exc


def repo_config(recipe: "Recipe", workspace: Path) -> Any:
    """A Feast ``RepoConfig`` built in code (same content as the YAML, secrets resolved)."""
    from feast import RepoConfig

    return RepoConfig(repo_path=repo_dir(workspace, recipe.project), **config_dict(recipe, workspace))


def open_store(recipe: "Recipe", workspace: Path) -> Any:
    """A ``FeatureStore`` on the project's repo, configured in code (nothing is written)."""
    from feast import FeatureStore

    try:
        return FeatureStore(config=repo_config(recipe, workspace))
    except Exception as exc:  # noqa: BLE001 - Feast raises many types for bad configs
        raise BackendError(
            f"Feast could not open the feature store in {repo_dir(workspace, recipe.project)}: {exc}. "
            "Check features.store in the recipe."
        ) from exc


def write_config(recipe: "Recipe", workspace: Path) -> Path:
    """Write ``feature_store.yaml`` (only when its content changes) and return its path."""
    import yaml

    repo = repo_dir(workspace, recipe.project)
    repo.mkdir(parents=True, exist_ok=True)
    path = repo / "feature_store.yaml"
    text = "# Generated by Loom; do not edit (re-run `loom launch recipe=NAME`).\n" + yaml.safe_dump(
        config_dict(recipe, workspace, for_file=True), sort_keys=False)
    _write_if_changed(path, text)
    return path


def load_state(repo: Path) -> dict[str, dict[str, Any]]:
    """The object specs Loom has applied in the repo ``repo``, by kind and name (empty when none)."""
    path = repo / STATE_FILE
    state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {k: dict(state.get(k, {})) for k in _KINDS}


def save_state(repo: Path, state: dict[str, dict[str, Any]]) -> None:
    """Record the applied specs and regenerate the definitions file the ``feast`` CLI reads."""
    repo.mkdir(parents=True, exist_ok=True)
    _write_if_changed(repo / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")
    _write_if_changed(repo / DEFINITIONS_FILE, definitions_source(state))


def definitions_source(state: dict[str, dict[str, Any]]) -> str:
    """Python source of a Feast definitions file holding exactly the objects in ``state``."""
    from framework.backends.feast import objects

    builder = inspect.getsource(objects)
    return "\n".join([
        '"""Feast definitions generated by Loom from the recipe; do not edit (re-run `loom launch recipe=NAME`)."""',
        "# The builder below is framework/backends/feast/objects.py, copied so this repo stands alone.",
        "# fmt: off",
        builder.split('"""', 2)[2],  # drop the builder's own module docstring
        f"SPEC = {pprint.pformat(state, width=100, sort_dicts=True)}",
        "",
        "for _kind, _objects in build(SPEC).items():",
        "    for _name, _obj in _objects.items():",
        "        globals()[f'{_kind}_{_name}'] = _obj",
        "",
    ])


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
