"""What the ``loom`` serving commands do, for ``api.py`` to call: up/down/status, launch, predict, export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from framework.errors import BackendError


def cluster_up(recipe: Any, workspace: Path) -> dict[str, Any]:
    """``loom up`` (and the start of ``loom launch``): the embedded head, unless ``env.ray_address`` is set.

    Also sets this process's Ray auth environment for the head, so call it before any backend
    connects (``loom launch`` runs training and serving on the same head).

    Returns:
        ``ray_cluster.status`` of the head, or ``{"running": True, "address": env.ray_address}``.
    """
    from framework.backends import ray_cluster

    if recipe.env.ray_address:
        return {"running": True, "address": recipe.env.ray_address, "external": True}
    info = ray_cluster.up(recipe, workspace)
    # Every later ray.init in this process (training, serving, rollout) then carries the token.
    ray_cluster.use_head_env(workspace)
    return info


def cluster_down(workspace: Path) -> dict[str, Any]:
    """``loom down``: stop the workspace's head (Serve apps and the rollout controller with it)."""
    from framework.backends import ray_cluster

    return ray_cluster.down(workspace)


def cluster_status(workspace: Path) -> dict[str, Any]:
    """``loom status``: the head's state, address, token file, metrics URL."""
    from framework.backends import ray_cluster

    return ray_cluster.status(workspace)


def launch_summary(recipe: Any, deploy_outputs: dict[str, Any],
                   project_dir: Path | None = None) -> list[str]:
    """Lines ``loom launch`` prints after applying: the endpoint, versions, a ready-to-paste curl.

    With ``project_dir`` the curl asks about a real entity from the recipe's data.
    """
    from framework.backends.ray_serve.client import curl_command

    url = deploy_outputs.get("url")
    if not url:
        return []
    lines = [f"Endpoint: {url}",
             f"Model {recipe.model_id}: stable version {deploy_outputs.get('stable_version')}"
             + (f", candidate {deploy_outputs['candidate_version']}"
                if deploy_outputs.get("candidate_version") else ""),
             f"Try it:  {curl_command(recipe, url, project_dir)}"]
    return lines


def predict(recipe: Any, workspace: Path, pairs: list[str]) -> dict[str, Any]:
    """``loom predict recipe=churn customer_id=42 [feature=value ...]``: one call, as a client would.

    The URL is the running Serve proxy's when this process can reach the cluster, else the
    recipe's ``serving.http``; the key comes from the recipe's API-key environment variable.

    Raises:
        BackendError: a bad ``name=value`` pair, no key in the environment, or the API's error.
    """
    from framework.backends.ray_serve import client

    entities, features = client.split_pairs(recipe, pairs)
    if not entities and not features:
        example = " ".join(f"{k}={v}" for k, v in client.example_entities(recipe).items())
        raise BackendError(f"Give the entity to predict for, e.g. `loom predict recipe={recipe.name} {example}`.")
    key = _api_key(recipe)
    return client.predict(_url(recipe, workspace), key, entities, features)


def _api_key(recipe: Any) -> str | None:
    from framework.backends.ray_serve.client import key_env

    if not recipe.serving.auth.enabled:
        return None
    env = key_env(recipe)
    if env and os.environ.get(env):
        return os.environ[env]
    for entry in recipe.serving.auth.api_keys:
        try:
            return entry.key.reveal()
        except (KeyError, OSError):
            continue
    raise BackendError(f"No API key: export {env or 'the variable named in serving.auth.api_keys'} "
                       "(the same key the service was deployed with).")


def _url(recipe: Any, workspace: Path) -> str:
    from framework.backends.ray_serve.client import endpoint_url

    try:
        from framework.backends import ray_runtime
        from framework.backends.ray_serve import runtime

        if ray_runtime.connect(recipe, workspace, start=False):
            host, port = runtime.http_address()
            return endpoint_url(recipe, host, port)
    except Exception:  # no cluster or no Serve: fall back to the recipe's address
        pass
    return endpoint_url(recipe)


def export_serve_config(recipe: Any, workspace: Path, project_dir: Path, out: Path,
                        model: dict[str, Any] | None = None) -> Path:
    """``loom export serve-config recipe=... [-o serve.yaml]``: a file ``serve deploy`` accepts.

    Slots come from ``model`` (``registry.register``-style outputs) when given, else from the
    running app's ``user_config``, else from the registry's ``champion`` (then ``candidate``) alias.

    Raises:
        BackendError: no model version can be found, or an API key's secret is unavailable.
    """
    from framework.backends.ray_serve.client import write_serve_config
    from framework.backends.ray_serve.config import initial_user_config, serve_config

    user_config = initial_user_config(model) if model else (
        _running_user_config(recipe, workspace) or initial_user_config(_registered(recipe, workspace)))
    try:
        config = serve_config(recipe, workspace, user_config, project_dir)
    except ValueError as exc:
        raise BackendError(str(exc)) from exc
    return write_serve_config(config, out)


def _running_user_config(recipe: Any, workspace: Path) -> dict[str, Any] | None:
    try:
        from framework.backends import ray_runtime
        from framework.backends.ray_serve import traffic

        if ray_runtime.connect(recipe, workspace, start=False):
            return traffic.current_user_config(recipe.app_name)
    except Exception:  # no cluster, no Serve: use the registry
        return None
    return None


def _registered(recipe: Any, workspace: Path) -> dict[str, Any]:
    from framework.backends.model_registry.tracking import redact_uri, tracking_uri
    from framework.backends.model_registry.versions import resolve_model

    uri = tracking_uri(recipe, workspace)
    aliases = (recipe.registry.champion_alias, recipe.registry.candidate_alias)
    for alias in aliases:
        try:
            return resolve_model(uri, recipe.model_id, alias)
        except BackendError as exc:  # alias not set yet: try the next; other failures are real
            if "has no version or alias" not in str(exc):
                raise
    raise BackendError(redact_uri(
        f"No registered version of model '{recipe.model_id}' (alias {' or '.join(aliases)}) "
        f"in {uri}. Run `loom launch recipe={recipe.name}` first."))
