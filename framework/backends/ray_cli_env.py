"""The environment the ``ray`` and ``serve`` CLIs (and a Python driver) need to reach a workspace's
head, as shell ``export`` lines: ``loom env``, used as ``eval "$(loom env)"``.

The variables the tools read (Ray 2.60): ``RAY_ADDRESS`` (``ray status``, ``ray.init()``; the
``ray job`` CLI falls back to it), ``RAY_DASHBOARD_ADDRESS`` (every ``serve`` command; its default
``http://localhost:8265`` is not the head's), ``RAY_API_SERVER_ADDRESS`` (``ray job``), and token
auth: ``RAY_AUTH_MODE=token`` (without it the CLIs send no token and get 401) with
``RAY_AUTH_TOKEN_PATH`` naming the workspace's token file. The token itself is never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.backends import ray_cluster


def cli_env(recipe: Any, workspace: Path) -> dict[str, Any]:
    """``{"variables": {NAME: value}, "notes": [sentence, ...]}`` for the recipe's Ray.

    With ``env.ray_address`` only ``RAY_ADDRESS`` is known: that cluster's token and dashboard
    are its own. For the workspace's head, the dashboard address is the running head's (or, when
    none runs, the one ``loom up`` would start from ``env``).
    """
    env = recipe.env
    if env.ray_address:
        return {"variables": {"RAY_ADDRESS": env.ray_address},
                "notes": ["env.ray_address names a cluster Loom did not start: its token and "
                          "dashboard address are that cluster's own."]}
    info = ray_cluster.status(workspace)
    variables = {"RAY_ADDRESS": info["address"] or f"127.0.0.1:{ray_cluster.GCS_PORT}",
                 **ray_cluster.client_env(workspace)}
    notes = []
    if info["running"]:
        dashboard = info["dashboard_url"]
        notes += ray_cluster.settings_differ(recipe, workspace)
    else:
        dashboard = f"http://127.0.0.1:{env.dashboard_port}" if env.dashboard else None
        notes.append(f"The workspace head ({workspace}) is not running: `loom up` starts it.")
    if dashboard:
        variables["RAY_DASHBOARD_ADDRESS"] = dashboard
        variables["RAY_API_SERVER_ADDRESS"] = dashboard
    else:
        notes.append("No dashboard (env.dashboard: false, or the head was started without it): "
                     "`serve` and `ray job` cannot reach this head; `ray status` and drivers can.")
    return {"variables": variables, "notes": notes}

