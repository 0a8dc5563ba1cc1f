"""Changing a running application in place through Serve's declarative path (no replica restart).

``update_user_config`` is the Python equivalent of ``serve deploy`` / the REST PUT: it re-applies
every declaratively deployed application, with only this app's ``user_config`` changed, so Serve
calls ``reconfigure()`` on the live replicas instead of replacing them. Works from any driver
connected to the Ray cluster (a CLI process or a detached actor).

The ``user_config`` document (the contract with the rollout controller)::

    {"slots": {"stable": {"version", "model_path", "model_uri"[, "fault"]},
               "candidate": null | {...}[, "previous": {...}]},
     "candidate_weight": 0..100, "shadow_percent": 0..100, "config_version": int,
     "record_samples": bool (per-request samples for the rollout controller; default false)}
"""

from __future__ import annotations

import time
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
            "`loom launch recipe=...`."
        ) from exc


def app_configs() -> dict[str, dict[str, Any]]:
    """Every declaratively deployed application's config, by name (as Serve checkpointed it)."""
    import ray

    client = _client()
    configs = ray.get(client._controller.get_app_configs.remote())
    return {name: cfg.model_dump(mode="json", exclude_unset=True) for name, cfg in configs.items()}


def apply_apps(configs: dict[str, dict[str, Any]], wait_for: str | None = None,
               wait_s: float = WAIT_S) -> None:
    """Apply the full set of declarative apps; optionally wait until ``wait_for`` is RUNNING.

    Raises:
        BackendError: Serve refused the config, or the app did not become RUNNING in time.
    """
    from ray.serve.schema import ServeDeploySchema

    try:
        schema = ServeDeploySchema.model_validate({"applications": list(configs.values())})
        _client().deploy_apps(schema)
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"Ray Serve refused the application config: {exc}") from exc
    if wait_for is not None:
        wait_running(wait_for, wait_s)


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
        BackendError: naming the bad key and what it must be.
    """
    slots = user_config.get("slots")
    if not isinstance(slots, dict) or not isinstance(slots.get("stable"), dict):
        raise BackendError("user_config.slots.stable is required: {version, model_path, model_uri}.")
    for role, slot in slots.items():
        if slot is None:
            continue
        if not isinstance(slot, dict) or not slot.get("version") or not slot.get("model_path"):
            raise BackendError(f"user_config.slots.{role}: needs 'version' and 'model_path'.")
        if not str(slot["model_path"]).endswith((".ubj", ".json")):
            raise BackendError(f"user_config.slots.{role}.model_path: Got {slot['model_path']!r}. "
                               "Loom serves XGBoost .ubj or .json files only.")
    for key in ("candidate_weight", "shadow_percent"):
        value = user_config.get(key, 0)
        if not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise BackendError(f"user_config.{key}: Got {value!r}. It is a percent, 0..100.")
    if not isinstance(user_config.get("record_samples", False), bool):
        raise BackendError("user_config.record_samples must be true or false.")
    if not isinstance(user_config.get("config_version", 0), int):
        raise BackendError("user_config.config_version must be an integer that grows with every change.")


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
    check_user_config(user_config)
    configs = app_configs()
    if model_id not in configs:
        raise BackendError(
            f"No Serve application '{model_id}' to reconfigure; deploy it first with "
            "`loom launch recipe=...`."
        )
    if surge:
        _scale(configs, model_id, True, wait_s)
    configs[model_id]["deployments"][0]["user_config"] = user_config
    apply_apps(configs, wait_for=model_id, wait_s=wait_s)
    if surge is False:
        _scale(configs, model_id, False, wait_s)


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
    return _scale(app_configs(), model_id, on, wait_s)


def _scale(configs: dict[str, dict[str, Any]], model_id: str, on: bool, wait_s: float) -> bool:
    """``set_surge`` on ``configs`` (every declarative app, as fetched), which it keeps current."""
    from framework.serving.settings import parse_args, replica_options

    if not on:
        _NO_ROOM.discard(model_id)
    elif model_id in _NO_ROOM:  # tried in this process already: do not wait again at every step
        return False
    app = configs.get(model_id)
    if app is None:
        return True
    deployment = app["deployments"][0]
    want = replica_options(parse_args(app["args"]).serving, on)
    if {key: deployment.get(key) for key in want} == want:
        return True
    base = {key: deployment.pop(key) for key in ("num_replicas", "autoscaling_config")
            if key in deployment}
    deployment.update(want)
    if not on:
        apply_apps(configs)
        return True
    try:
        apply_apps(configs, wait_for=model_id, wait_s=min(wait_s, SURGE_WAIT_S))
    except BackendError:
        for key in want:
            deployment.pop(key)
        deployment.update(base)
        apply_apps(configs, wait_for=model_id, wait_s=wait_s)
        _NO_ROOM.add(model_id)
        return False
    return True


#: Models whose extra rollout replicas could not start, until their rollout ends (per process).
_NO_ROOM: set[str] = set()


def deploy_app(app: dict[str, Any], wait_s: float = WAIT_S) -> None:
    """Create or update one application, keeping every other declarative app as it is."""
    configs = app_configs()
    configs[app["name"]] = app
    apply_apps(configs, wait_for=app["name"], wait_s=wait_s)


def ensure_gateway(route_prefix: str, max_body_bytes: int = 1_048_576) -> None:
    """Deploy the gateway for the models under ``route_prefix`` unless it runs already."""
    from framework.backends.ray_serve.config import gateway_config

    gateway = gateway_config(route_prefix, max_body_bytes)
    configs = app_configs()
    if gateway["name"] not in configs:
        configs[gateway["name"]] = gateway
        apply_apps(configs, wait_for=gateway["name"])


def drop_gateway_if_unused(route_prefix: str) -> bool:
    """Remove the gateway of ``route_prefix`` once no model app is mounted under it; True if so."""
    from framework.backends.ray_serve.config import IMPORT_PATH, gateway_config, model_route

    name = gateway_config(route_prefix)["name"]
    under = model_route(route_prefix, "")
    configs = app_configs()
    models = [n for n, c in configs.items() if c.get("import_path") == IMPORT_PATH
              and str(c.get("route_prefix", "")).startswith(under)]
    if models or configs.pop(name, None) is None:
        return False
    apply_apps(configs)
    return True


def delete_app(model_id: str) -> None:
    """Remove ``model_id``'s application (other apps keep running)."""
    configs = app_configs()
    if configs.pop(model_id, None) is not None:
        apply_apps(configs)
