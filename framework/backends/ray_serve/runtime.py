"""Making sure Serve runs on the connected Ray, on 127.0.0.1, with access logs off."""

from __future__ import annotations

import logging
from typing import Any

from framework.errors import BackendError


def ensure_serve(host: str, port: int, request_timeout_s: float | None = None) -> Any:
    """Serve's controller client, starting Serve's HTTP proxy on ``host:port`` if it is not running.

    ``request_timeout_s``: the proxy's deadline per request (a little above the recipe's
    ``serving.timeouts.request_s``, so the replica's own JSON 503 answers first).

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
    options = {"host": host, "port": port}
    if request_timeout_s is not None:
        options["request_timeout_s"] = request_timeout_s
    serve.start(http_options=options,
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
