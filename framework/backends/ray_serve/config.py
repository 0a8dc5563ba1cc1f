"""The Serve config of a recipe's application: builder args, deployment options, ``serve deploy`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.backends.ray_runtime import ON_HEAD
from framework.compile.contract import feature_types
from framework.serving.auth import key_records
from framework.serving.settings import (MODEL_IMPORT_PATH, AppArgs, deployment_options,
                                       proxy_request_timeout_s)

IMPORT_PATH = MODEL_IMPORT_PATH
DEPLOYMENT = "Predictor"
GATEWAY_APP = "loom-gateway"
GATEWAY_IMPORT_PATH = "framework.serving.gateway:build_gateway"
#: The gateway forwards and lists; it does no model work, so a small CPU share is enough.
GATEWAY_CPUS = 0.1


def base_route(route_prefix: str) -> str:
    """``serving.route_prefix`` without its trailing slash ("" for the default "/")."""
    return route_prefix.rstrip("/")


def model_route(route_prefix: str, model_id: str) -> str:
    """Where a model's app is mounted: ``<prefix>/v1/models/<model_id>``."""
    return f"{base_route(route_prefix)}/v1/models/{model_id}"


def gateway_route(route_prefix: str) -> str:
    """Where the gateway is mounted: ``<prefix>/v1`` (``/v1/predictions``, ``/v1/models``)."""
    return f"{base_route(route_prefix)}/v1"


def entity_keys(recipe: Any) -> dict[str, str]:
    """Join keys of the entities behind the model's features, with their value types."""
    keys: dict[str, str] = {}
    views = {view for view, _ in recipe.feature_refs()}
    for view in sorted(views):
        for entity_name in recipe.features.views[view].entities:
            entity = recipe.features.entities[entity_name]
            keys.update({k: entity.value_type for k in entity.join_keys})
    return keys


def feast_settings(recipe: Any, workspace: Path) -> dict[str, Any]:
    """How replicas reach the online store: the generated Feast repo (or, with a SQL registry, its
    settings inline), the feature service and each view's ``ttl_s`` (in the args, so a changed TTL
    restarts the replicas that enforce it)."""
    from framework.backends.feast.repo import inline_config, repo_dir

    views = recipe.features.views
    settings = {"type": "feast", "repo_dir": str(repo_dir(Path(workspace).resolve(), recipe.project)),
                "feature_service": recipe.features.service.name,
                "ttl_s": {view: views[view].ttl_s for view in
                          dict.fromkeys(v for v, _ in recipe.feature_refs()) if view in views}}
    if recipe.features.store.registry:  # every node reads the SQL registry: no repo dir needed
        settings["config"] = inline_config(recipe, workspace)
    return settings


def app_args(recipe: Any, workspace: Path, project_dir: Path | None = None,
             features: dict[str, Any] | None = None, stats: bool = True,
             fallback_models: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The builder ``args`` (JSON): keys are sha256 hashes only, never the keys themselves.

    Args:
        recipe: the validated recipe.
        workspace: the Loom workspace.
        project_dir: where a relative ``serving.auth.keys_file`` resolves.
        features: replica feature-lookup settings; the Feast online store by default.
        stats: ship per-request samples to the stats actor (the rollout controller reads them).
        fallback_models: ``serving.fallback`` models resolved to ``{name, version, model_path}``.

    Raises:
        ValueError: an API key's secret is unavailable (the message names the recipe key).
    """
    args = AppArgs(
        model_id=recipe.model_id,
        app_name=recipe.app_name,
        task=recipe.task,
        feature_names=recipe.feature_names(),
        feature_types=feature_types(recipe),
        entity_keys=entity_keys(recipe),
        serving=recipe.serving,
        features=features or feast_settings(recipe, workspace),
        api_keys=key_records(recipe.serving, project_dir) if recipe.serving.auth.enabled else [],
        stats=stats,
        metrics=recipe.monitoring.enabled,
        drift=drift_settings(recipe),
        prediction_log=prediction_log_settings(recipe, workspace),
        fallback_models=fallback_models or [],
        model_store=model_store(recipe),
        deployment_name=DEPLOYMENT,
    )
    return args.model_dump(mode="json")


def model_store(recipe: Any) -> str:
    """The MLflow server replicas download versions from: ``registry.tracking_uri`` when it is a
    server (``http(s)://``), without credentials (replicas authenticate with the
    ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``/``_TOKEN`` of their own environment); "" for a store
    on this machine, whose files the replicas read where the registry step put them."""
    from urllib.parse import urlsplit, urlunsplit

    uri = recipe.registry.tracking_uri or ""
    if not uri.startswith(("http://", "https://")):
        return ""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def drift_settings(recipe: Any) -> dict[str, Any] | None:
    """What the replicas need of ``monitoring.drift``; None when monitoring or drift is off."""
    m = recipe.monitoring
    if not (m.enabled and m.drift.enabled):
        return None
    return m.drift.replica_settings()


def prediction_log_settings(recipe: Any, workspace: Path) -> dict[str, Any] | None:
    """Where and how the replicas write the prediction log; None when monitoring or the log is off."""
    from framework.serving.predlog import log_dir

    m = recipe.monitoring
    if not (m.enabled and m.log.enabled and m.log.sample_rate > 0):
        return None
    return {"directory": str(log_dir(Path(workspace).resolve(), recipe.model_id)),
            "sample_rate": m.log.sample_rate, "max_bytes": int(m.log.max_mb * 1024 * 1024),
            "flush_s": m.log.flush_s}


def app_config(model_id: str, args: dict[str, Any], user_config: dict[str, Any],
               surge: bool = False) -> dict[str, Any]:
    """One application of a ``ServeDeploySchema``: builder, args, and the ingress's options.

    ``surge``: with ``serving.surge_replicas`` extra replicas (a candidate is being rolled out).
    """
    parsed = AppArgs.model_validate(args)
    options = deployment_options(parsed, surge)
    return {
        "name": model_id,
        "route_prefix": model_route(parsed.serving.route_prefix, parsed.model_id),
        "import_path": IMPORT_PATH,
        "args": args,
        "deployments": [{**options, "user_config": user_config}],
    }


def gateway_config(route_prefix: str, max_body_bytes: int = 1_048_576,
                   timeouts: dict[str, float] | None = None) -> dict[str, Any]:
    """The gateway application for the models mounted under ``route_prefix``.

    ``timeouts``: ``{"body_read_s", "request_s"}`` from ``serving.timeouts`` (the gateway's
    defaults without them).
    """
    base = base_route(route_prefix)
    return {
        "name": GATEWAY_APP if not base else f"{GATEWAY_APP}{base.replace('/', '-')}",
        "route_prefix": gateway_route(route_prefix),
        "import_path": GATEWAY_IMPORT_PATH,
        "args": {"max_body_bytes": max_body_bytes, "models_prefix": f"{base}/v1/models",
                 **(timeouts or {})},
        "deployments": [{"name": "LoomGateway", "num_replicas": 1, "max_ongoing_requests": 256,
                         "ray_actor_options": {"num_cpus": GATEWAY_CPUS, "resources": dict(ON_HEAD)},
                         "logging_config": {"enable_access_log": False}}],
    }


def serve_config(recipe: Any, workspace: Path, user_config: dict[str, Any],
                 project_dir: Path | None = None, features: dict[str, Any] | None = None) -> dict:
    """A complete config that ``serve deploy`` accepts: HTTP on the recipe's host (127.0.0.1 by default).

    Args:
        recipe: the validated recipe.
        workspace: the Loom workspace (the Feast repo lives in ``<workspace>/feast``).
        user_config: the slots/weights document (see ``traffic.py``).
        project_dir: where a relative ``serving.auth.keys_file`` resolves.
        features: replica feature-lookup settings; the Feast online store by default.
    """
    args = app_args(recipe, workspace, project_dir, features)
    http = recipe.serving.http
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": http.host, "port": http.port,
                         "request_timeout_s": proxy_request_timeout_s(recipe.serving)},
        "logging_config": {"enable_access_log": False},
        "applications": [app_config(recipe.app_name, args, user_config),
                         gateway_config(recipe.serving.route_prefix,
                                        recipe.serving.max_body_bytes)],
    }


def validate_config(config: dict[str, Any]) -> Any:
    """The config as Ray's ``ServeDeploySchema`` (raises pydantic's ``ValidationError``)."""
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(config)


def initial_user_config(model: dict[str, Any]) -> dict[str, Any]:
    """The first ``user_config`` of an app: the registered model as the stable slot."""
    from framework.serving.control import Slots, UserConfig

    return UserConfig(slots=Slots(stable=slot_of(model)), config_version=1).to_doc()


def slot_of(model: dict[str, Any]) -> Any:
    """A ``SlotSpec`` from ``registry.register`` outputs."""
    from framework.serving.control import SlotSpec

    return SlotSpec(version=str(model["version"]), model_path=str(model["model_path"]),
                    model_uri=str(model.get("model_uri", "")), contract=model.get("contract"),
                    profile_path=model.get("profile_path"), compiled_path=model.get("compiled_path"),
                    compiled_sha256=model.get("compiled_sha256"))
