"""The controller's real ports: Serve's user_config, the replicas' stats actor, the MLflow registry.

Each imports its engine lazily, inside the methods, so importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.errors import BackendError

if TYPE_CHECKING:
    from framework.spec import Recipe

#: Model version tag that says why a version was rolled back.
TAG_ROLLBACK = "loom.rollback_reason"
#: Model version tag set when a rejected version is rolled out again (``--retry-rejected``).
TAG_RETRIED = "loom.retried"


class ServeTraffic:
    """TrafficSetter over ``framework.backends.ray_serve.traffic`` (in place, declarative path)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def set(self, user_config: dict[str, Any], surge: bool = False) -> None:
        from framework.backends.ray_serve import traffic

        traffic.update_user_config(self.model_id, user_config, surge=surge)

    def current(self) -> dict[str, Any] | None:
        from framework.backends.ray_serve import traffic

        return traffic.current_user_config(self.model_id)


class StatsSource:
    """SampleSource over the model's stats actor (``framework.serving.stats.read_window``)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def window(self, start: float, end: float) -> list[dict[str, Any]]:
        from framework.serving.stats import read_window

        return read_window(self.model_id, start, end)


class RegistryPromoter:
    """Promoter over the MLflow registry: moves the champion alias, tags rolled-back versions.

    Holds plain strings only, so it travels to the detached controller actor as is.
    """

    def __init__(self, tracking_uri: str, model_name: str, champion_alias: str = "champion") -> None:
        self.tracking_uri, self.model_name, self.alias = tracking_uri, model_name, champion_alias

    @classmethod
    def for_recipe(cls, recipe: "Recipe", workspace: Path | str) -> "RegistryPromoter":
        """The promoter for a recipe's registry (``registry.tracking_uri`` or the workspace store)."""
        from framework.backends.model_registry.tracking import tracking_uri

        return cls(tracking_uri(recipe, Path(workspace)), recipe.model_id,
                   recipe.registry.champion_alias)

    def promote(self, version: str) -> None:
        self._call(f"move the '{self.alias}' alias to", version,
                   lambda c: c.set_registered_model_alias(self.model_name, self.alias, version))

    def tag_rollback(self, version: str, reason: str) -> None:
        self._call("tag as rolled back", version, lambda c: c.set_model_version_tag(
            self.model_name, version, TAG_ROLLBACK, reason[:4000]))

    def rejection(self, version: str) -> str | None:
        """Why a rollout rejected ``version`` (its rollback tag), or None."""
        try:
            tags = self._client().get_model_version(self.model_name, str(version)).tags or {}
        except Exception:  # MlflowException: no such version
            return None
        return tags.get(TAG_ROLLBACK) or None

    def clear_rejection(self, version: str) -> None:
        """Forget the rejection of ``version`` (``--retry-rejected``); the retry is tagged."""
        def clear(client: Any) -> None:
            client.delete_model_version_tag(self.model_name, str(version), TAG_ROLLBACK)
            client.set_model_version_tag(self.model_name, str(version), TAG_RETRIED, "true")
        self._call("clear the rejection of", version, clear)

    def champion(self) -> str | None:
        """The version the champion alias points at, or None."""
        try:
            return str(self._client().get_model_version_by_alias(self.model_name, self.alias).version)
        except Exception:  # MlflowException: no such alias yet
            return None

    def _client(self) -> Any:
        from framework.backends.model_registry.tracking import client_for

        return client_for(self.tracking_uri)

    def _call(self, what: str, version: str, fn: Any) -> None:
        from framework.backends.model_registry.tracking import redact_uri

        try:
            fn(self._client())
        except BackendError:
            raise
        except Exception as exc:  # MlflowException, sqlite errors
            # The URI may hold credentials, and so may the engine's own message about it.
            raise BackendError(redact_uri(
                f"MLflow at {self.tracking_uri}: could not {what} {self.model_name} version "
                f"{version}: {exc}. Check registry.tracking_uri and `loom registry list recipe=NAME`."
            )) from exc


def real_ports(model_id: str, promoter: Any,
               prometheus: dict[str, Any] | None = None) -> dict[str, Any]:
    """setter, source, promoter and clock for a controller that drives the real engines.

    ``prometheus``: ``{"url", "scrape_interval_s"}`` to read the analysis from Prometheus
    (``monitoring.prometheus_url``) instead of the replicas' samples.
    """
    from framework.rollout.ports import SystemClock

    if prometheus:
        from framework.rollout.prometheus import PrometheusSource

        source: Any = PrometheusSource(prometheus["url"], model_id,
                                       float(prometheus["scrape_interval_s"]))
    else:
        source = StatsSource(model_id)
    return {"setter": ServeTraffic(model_id), "source": source, "promoter": promoter,
            "clock": SystemClock()}


def ports_for(recipe: "Recipe", workspace: Path | str) -> Any:
    """The picklable ports factory of a recipe's rollouts (``functools.partial(real_ports, ...)``)."""
    import functools

    monitoring = recipe.monitoring
    prometheus = ({"url": monitoring.prometheus_url,
                   "scrape_interval_s": monitoring.scrape_interval_s}
                  if monitoring.prometheus_url else None)
    return functools.partial(real_ports, recipe.app_name,
                             RegistryPromoter.for_recipe(recipe, workspace), prometheus)
