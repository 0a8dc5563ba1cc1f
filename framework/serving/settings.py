"""The application builder's arguments: plain JSON the driver writes and every replica reads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from framework.spec.serving import Serving


class KeyRecord(BaseModel):
    """One API key as a replica knows it: who holds it, its sha256, the models it may call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    sha256: str = Field(min_length=64, max_length=64)
    models: list[str] = Field(default_factory=lambda: ["*"])


class FallbackModel(BaseModel):
    """A model of the fallback chain resolved to a local XGBoost file by the driver."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    model_path: str
    model_uri: str = ""


class AppArgs(BaseModel):
    """Everything a replica needs besides ``user_config``; changing it restarts replicas."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str
    app_name: str = Field(default="", description="The Serve application (default: model_id).")
    task: Literal["binary", "multiclass", "regression"]
    feature_names: list[str] = Field(min_length=1)
    feature_types: dict[str, str] = Field(
        default_factory=dict, description="Feature -> value type; 'string' ones are categorical.")
    entity_keys: dict[str, str] = Field(
        default_factory=dict, description="Join key -> value type (string, int64, ...)."
    )
    serving: Serving = Field(default_factory=Serving)
    features: dict[str, Any] = Field(
        default_factory=lambda: {"type": "none"}, description="How replicas look features up."
    )
    api_keys: list[KeyRecord] = Field(default_factory=list)
    fallback_models: list[FallbackModel] = Field(default_factory=list)
    model_store: str = Field(
        default="", description="An MLflow server (tracking URI, no credentials) every version is "
        "downloaded from by its model_uri, into a cache on the replica's node; empty: the model "
        "files are on this machine (model_path).")
    stats: bool = Field(default=True, description="Ship per-request samples to the stats actor.")
    metrics: bool = Field(default=True, description="Export Prometheus metrics (monitoring.enabled).")
    drift: dict[str, Any] | None = Field(
        default=None, description="monitoring.drift (sample_rate, window_s, min_rows); None: off.")
    prediction_log: dict[str, Any] | None = Field(
        default=None, description="The prediction log: directory, sample_rate, max_bytes, flush_s; "
        "None: off.")
    deployment_name: str = Field(default="Predictor")


#: The builder every Loom model app is deployed with (``import_path`` in its Serve config).
MODEL_IMPORT_PATH = "framework.serving.app:build_app"


def models_under(apps: Any, models_prefix: str) -> dict[str, str]:
    """Model id → app name of the Loom model apps mounted under ``models_prefix``.

    ``apps``: ``(app name, import_path, route_prefix)`` of every Serve application.
    """
    prefix = models_prefix.rstrip("/") + "/"
    return {route[len(prefix):]: name for name, path, route in apps
            if path == MODEL_IMPORT_PATH and (route or "").startswith(prefix)}


#: Serve's proxy cuts a request this long after ``serving.timeouts.request_s``: the replica's own
#: deadline answers first, in the API's JSON shape (the proxy's 408 is plain text).
PROXY_GRACE_S = 1.0


def proxy_request_timeout_s(serving: Serving) -> float:
    """``http_options.request_timeout_s`` of the Serve config for a recipe's ``serving``."""
    return serving.timeouts.request_s + PROXY_GRACE_S


def parse_args(args: dict[str, Any]) -> AppArgs:
    """Validate builder ``args``; a ``ValueError`` names the bad key."""
    return AppArgs.model_validate(args)


def deployment_options(parsed: AppArgs, surge: bool = False) -> dict[str, Any]:
    """Replicas or autoscaling, concurrency limits and CPUs from the recipe's ``serving`` section.

    ``surge`` adds ``serving.surge_replicas`` (while a candidate is loaded; see ``replica_options``).
    """
    s = parsed.serving
    opts: dict[str, Any] = {
        "name": parsed.deployment_name,
        # Serve admits twice the recipe's limit so the replica itself answers the excess with the
        # API's JSON 503 + Retry-After (Serve's own backpressure 503 is plain text, no Retry-After).
        "max_ongoing_requests": 2 * s.max_ongoing_requests,
        # A bounded queue behind that: beyond it the proxy sheds load instead of queueing forever.
        "max_queued_requests": 4 * s.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": s.num_cpus_per_replica,
                              **({"resources": dict(s.resources)} if s.resources else {})},
        "logging_config": {"enable_access_log": False},
        # A restart (new builder args) starts the replacements before stopping old replicas.
        "max_surge_percent": 100,
    }
    return {**opts, **replica_options(s, surge)}


def replica_options(s: Serving, surge: bool) -> dict[str, Any]:
    """``num_replicas`` or ``autoscaling_config``, with ``surge_replicas`` more when ``surge``.

    Serve moves a replica out of routing while ``reconfigure()`` runs (a ``user_config`` change);
    the surge keeps another replica answering meanwhile, so weight changes never stall requests.
    """
    extra = s.surge_replicas if surge else 0
    if s.autoscaling is None:
        return {"num_replicas": s.replicas + extra}
    low = s.autoscaling.min_replicas + extra
    return {"autoscaling_config": {
        "min_replicas": low, "max_replicas": max(s.autoscaling.max_replicas, low),
        "target_ongoing_requests": s.autoscaling.target_ongoing_requests}}
