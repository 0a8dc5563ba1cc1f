"""Connecting a driver to Ray and making sure Serve runs, on 127.0.0.1, with access logs off."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from framework.errors import BackendError


def connect(recipe: Any, workspace: Path, start: bool = True) -> bool:
    """Connect this process to Ray: ``env.ray_address``, else the workspace's head.

    Args:
        recipe: the validated recipe (``env.ray_address``, ``env.metrics_export_port``).
        workspace: the Loom workspace (``<workspace>/ray/address`` names the embedded head).
        start: start the embedded head when none runs; when False, return False instead.

    Raises:
        BackendError: the cluster cannot be reached or started.
    """
    import ray

    if ray.is_initialized():
        return True
    from framework.backends import ray_cluster

    address = recipe.env.ray_address
    if not address:
        info = ray_cluster.status(workspace)
        if not info.get("running"):
            if not start:
                return False
            info = ray_cluster.up(recipe, workspace)
        address = info["address"]
        ray_cluster.use_head_env(workspace)
    try:
        ray.init(address=address, namespace="loom", log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:
        raise BackendError(
            f"Cannot connect to Ray at {address} (env.ray_address or {workspace}/ray/address): "
            f"{type(exc).__name__}: {exc}. Start it with `loom up` or fix env.ray_address."
        ) from exc
    return True


def ensure_serve(host: str, port: int) -> Any:
    """Serve's controller client, starting Serve's HTTP proxy on ``host:port`` if it is not running.

    Raises:
        BackendError: the port is taken by another process (named in the message).
    """
    from ray import serve
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is not None:
        return client
    from framework.backends.ray_cluster import port_holder

    holder = port_holder(port)
    if holder is not None:
        raise BackendError(
            f"serving.http.port {port} is already in use by {holder}. Stop that process or set "
            "serving.http.port to a free port."
        )
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(http_options={"host": host, "port": port},
                logging_config={"enable_access_log": False})
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # Loom prints its own progress
    return _get_global_client()


def http_address(client: Any = None) -> tuple[str, int]:
    """``(host, port)`` the running Serve proxy listens on."""
    import ray
    from ray.serve.context import _get_global_client

    client = client or _get_global_client()
    options = ray.get(client._controller.get_http_config.remote())
    return options.host, options.port
