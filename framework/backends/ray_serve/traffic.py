"""Changing a running application in place through Serve's declarative path (no replica restart).

``update_user_config`` is the Python equivalent of ``serve deploy`` / the REST PUT: it re-applies
every declaratively deployed application, with only this app's ``user_config`` changed, so Serve
calls ``reconfigure()`` on the live replicas instead of replacing them. Works from any driver
connected to the Ray cluster (a CLI process or a detached actor).

The ``user_config`` document is ``framework.serving.control.UserConfig`` (one typed model for the
deploy step, the rollout controller and the replicas).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from framework.errors import BackendError

WAIT_S = 120.0
#: How long an extra rollout replica may take to start before the rollout goes on without it.
SURGE_WAIT_S = 60.0
#: Between status checks while waiting for an application (a cheap per-app call).
POLL_S = 0.1


def _client() -> Any:
    from ray.serve.context import _get_global_client
    from ray.serve.exceptions import RayServeException

    try:
        return _get_global_client()
    except RayServeException as exc:
        raise BackendError(
            "Ray Serve is not running on this Ray cluster. Deploy the model first: "
            "`loom launch recipe=NAME`."
        ) from exc


def app_configs() -> dict[str, dict[str, Any]]:
    """Every declaratively deployed application's config, by name (as Serve checkpointed it)."""
    import ray

    client = _client()
    configs = ray.get(client._controller.get_app_configs.remote())
    return {name: cfg.model_dump(mode="json", exclude_unset=True) for name, cfg in configs.items()}


def apply_apps(configs: dict[str, dict[str, Any]]) -> None:
    """Apply the full set of declarative apps (callers hold the config lock: see ``_edit``).

    Raises:
        BackendError: Serve refused the config.
    """
    from ray.serve.schema import ServeDeploySchema

    try:
        schema = ServeDeploySchema.model_validate({"applications": list(configs.values())})
        _client().deploy_apps(schema)
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"Ray Serve refused the application config: {exc}") from exc


def app_status(name: str) -> tuple[str, str]:
    """``(status, message)`` of an application; ``("NOT_STARTED", "")`` when it does not exist.

    Asks the controller for this one application (``serve.status()`` builds the details of every
    app and replica: ~10x the CPU, which a rollout's polling would take from the replicas).
    """
    overview = _client().get_serve_status(name)
    status = overview.app_status.status
    status = str(getattr(status, "value", status))
    if status == "NOT_STARTED":
        return status, ""
    messages = [overview.app_status.message] + [d.message for d in overview.deployment_statuses]
    return status, " ".join(m for m in messages if m)


def wait_running(name: str, wait_s: float = WAIT_S) -> None:
    """Block until application ``name`` is RUNNING; ``BackendError`` with Serve's message otherwise."""
    deadline = time.monotonic() + wait_s
    status, message = app_status(name)
    while time.monotonic() < deadline:
        status, message = app_status(name)
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED":
            break
        time.sleep(POLL_S)
    raise BackendError(
        f"Serve application '{name}' is {status}, not RUNNING: {_first_line(message)} "
        "See the replica logs in Ray's session directory (logs/serve/)."
    )


def _first_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "no message")[:500]


def current_user_config(model_id: str) -> dict[str, Any] | None:
    """The ``user_config`` of ``model_id``'s ingress deployment, or None when there is no such app."""
    config = app_configs().get(model_id)
    if config is None:
        return None
    return dict(config["deployments"][0].get("user_config") or {}) or None


def check_user_config(user_config: dict[str, Any]) -> None:
    """Refuse a document replicas could not apply (a bad reconfigure fails the whole deployment).

    Raises:
        BackendError: naming every bad key and what it must be (``serving.control.UserConfig``).
    """
    from framework.serving.control import UserConfig

    try:
        UserConfig.parse(user_config)
    except ValueError as exc:
        raise BackendError(f"Refusing a user_config replicas could not apply: {exc}.") from None


def update_user_config(model_id: str, user_config: dict[str, Any], wait_s: float = WAIT_S,
                       surge: bool | None = None) -> None:
    """Replace ``model_id``'s ``user_config`` in place (``reconfigure()`` on live replicas).

    Args:
        model_id: the application name (``recipe.model_id``).
        user_config: the whole new document; ``config_version`` should increase with every change.
        wait_s: how long to wait for the application to be RUNNING again.
        surge: True: run ``serving.surge_replicas`` extra replicas *before* the change (a rollout
            in progress); False: back to the recipe's count *after* it (the rollout ended);
            None: leave the replica count as it is.

    Raises:
        BackendError: the document is malformed, the app does not exist, or Serve refused or
            failed the change.
    """
    from framework.serving.control import same

    check_user_config(user_config)
    if surge:
        _scale(model_id, True, wait_s)

    def put(configs: dict[str, dict[str, Any]]) -> bool:
        if model_id not in configs:
            raise BackendError(
                f"No Serve application '{model_id}' to reconfigure; deploy it first with "
                "`loom launch recipe=NAME`."
            )
        configs[model_id]["deployments"][0]["user_config"] = user_config
        return True

    _edit(put, wait_for=model_id, wait_s=wait_s)
    live = current_user_config(model_id)
    if not same(live, user_config):  # only a writer outside Loom (`serve deploy`) gets between
        raise BackendError(
            f"Serve application '{model_id}' runs config_version "
            f"{(live or {}).get('config_version')} after this change set "
            f"{user_config.get('config_version')}: something outside Loom changed the Serve "
            "config meanwhile. Stop the other writer and try again (a rollout controller "
            "retries by itself)."
        )
    if surge is False:
        _scale(model_id, False, wait_s)


def _edit(edit: Callable[[dict[str, dict[str, Any]]], bool], wait_for: str | None = None,
          wait_s: float = WAIT_S) -> bool:
    """Change Serve's declarative config without losing another writer's change.

    Under the cluster-wide config lock: read every application's config, let ``edit`` change it
    in place, and write it back when ``edit`` returns True. Waiting for ``wait_for`` to be
    RUNNING again happens after the lock is released, so other models' changes are not held up
    by this one's replicas. Returns whether anything was written.
    """
    from framework.backends.ray_serve import config_lock

    with config_lock.held():
        configs = app_configs()
        changed = edit(configs)
        if changed:
            apply_apps(configs)
    if changed and wait_for is not None:
        wait_running(wait_for, wait_s)
    return changed


def set_surge(model_id: str, on: bool, wait_s: float = WAIT_S) -> bool:
    """Scale ``model_id`` to the recipe's replicas plus ``serving.surge_replicas`` (on) or without.

    Only the replica count changes, so live replicas keep answering. Turning it on returns once
    the extra replicas run; when they cannot start (no room on the cluster) within
    ``SURGE_WAIT_S``, the count goes back and the change proceeds without a surge: weight changes
    then hold requests briefly instead of failing the rollout. Turning it off returns at once (the
    remaining replicas answer while Serve drains the extra ones). No-op without the app.

    Returns:
        False when the extra replicas were wanted but could not start; True otherwise.
    """
    return _scale(model_id, on, wait_s)


def _scale(model_id: str, on: bool, wait_s: float) -> bool:
    """``set_surge``: the replica count of ``model_id`` with or without the surge replicas."""
    from framework.serving.settings import parse_args, replica_options

    if not on:
        _NO_ROOM.discard(model_id)
    elif model_id in _NO_ROOM:  # tried in this process already: do not wait again at every step
        return False
    saved: dict[str, Any] = {}

    def resize(configs: dict[str, dict[str, Any]]) -> bool:
        app = configs.get(model_id)
        if app is None:
            return False
        deployment = app["deployments"][0]
        want = replica_options(parse_args(app["args"]).serving, on)
        if {key: deployment.get(key) for key in want} == want:
            return False
        saved["want"] = want
        saved["base"] = {key: deployment.pop(key) for key in ("num_replicas", "autoscaling_config")
                         if key in deployment}
        deployment.update(want)
        return True

    def restore(configs: dict[str, dict[str, Any]]) -> bool:
        app = configs.get(model_id)
        if app is None:
            return False
        deployment = app["deployments"][0]
        for key in saved["want"]:
            deployment.pop(key, None)
        deployment.update(saved["base"])
        return True

    if not on:
        _edit(resize)
        return True
    try:
        _edit(resize, wait_for=model_id, wait_s=min(wait_s, SURGE_WAIT_S))
    except BackendError:
        _edit(restore, wait_for=model_id, wait_s=wait_s)
        _NO_ROOM.add(model_id)
        return False
    return True


#: Models whose extra rollout replicas could not start, until their rollout ends (per process).
_NO_ROOM: set[str] = set()


def deploy_app(app: dict[str, Any], wait_s: float = WAIT_S) -> None:
    """Create or update one application, keeping every other declarative app as it is."""

    def put(configs: dict[str, dict[str, Any]]) -> bool:
        configs[app["name"]] = app
        return True

    _edit(put, wait_for=app["name"], wait_s=wait_s)


def ensure_gateway(route_prefix: str, max_body_bytes: int = 1_048_576,
                   timeouts: dict[str, float] | None = None) -> None:
    """Deploy the gateway for the models under ``route_prefix``, or widen the one that runs.

    The gateway is shared by every model under the prefix, so its limits (body size, body-read
    and request deadlines, from each recipe's ``serving``) are the largest any of them asks for;
    each model's own replica still enforces its own. It is redeployed only when they grow.
    """
    from framework.backends.ray_serve.config import gateway_config

    gateway = gateway_config(route_prefix, max_body_bytes, timeouts)

    def add(configs: dict[str, dict[str, Any]]) -> bool:
        running = configs.get(gateway["name"])
        if running is not None:
            merged = dict(running.get("args") or {})
            for key, value in gateway["args"].items():
                if isinstance(value, (int, float)):
                    merged[key] = max(value, merged.get(key, value))
                else:
                    merged.setdefault(key, value)
            if merged == running.get("args"):
                return False
            gateway["args"] = merged
        configs[gateway["name"]] = gateway
        return True

    _edit(add, wait_for=gateway["name"])


def drop_gateway_if_unused(route_prefix: str) -> bool:
    """Remove the gateway of ``route_prefix`` once no model app is mounted under it; True if so."""
    from framework.backends.ray_serve.config import gateway_config, model_route
    from framework.serving.settings import models_under

    name = gateway_config(route_prefix)["name"]
    under = model_route(route_prefix, "")

    def drop(configs: dict[str, dict[str, Any]]) -> bool:
        apps = ((n, c.get("import_path"), c.get("route_prefix")) for n, c in configs.items())
        return not models_under(apps, under) and configs.pop(name, None) is not None

    return _edit(drop)


def delete_app(model_id: str) -> None:
    """Remove ``model_id``'s application (other apps keep running)."""
    _edit(lambda configs: configs.pop(model_id, None) is not None)
