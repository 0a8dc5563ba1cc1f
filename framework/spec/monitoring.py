"""The ``monitoring`` section: metrics, drift thresholds and alert rules."""

from typing import Literal

from pydantic import Field

from framework.spec.base import ENV_DRIVEN, Name, Spec


class Drift(Spec):
    """Feature and prediction drift against the training reference profile."""

    psi_warning: float = Field(default=0.1, ge=0, description="PSI at which drift is a warning.")
    psi_alert: float = Field(default=0.25, ge=0, description="PSI at which drift alerts.")
    window_s: float = Field(default=3600.0, gt=0, description="Seconds of traffic compared.")


class AlertRule(Spec):
    """A Prometheus alerting rule."""

    name: Name = Field(description="Alert name.")
    expr: str = Field(description="PromQL expression that fires the alert.")
    for_s: float = Field(default=60.0, ge=0, description="Seconds the condition holds before firing.")
    severity: Literal["info", "warning", "critical"] = Field(
        default="warning", description="Alert severity."
    )
    summary: str = Field(default="", description="One line for the person paged.")


class Monitoring(Spec):
    """How the running system is watched."""

    enabled: bool = Field(default=True, description="Export metrics and render alert rules.")
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus server to query; null reads metrics straight from the replicas.",
        json_schema_extra=ENV_DRIVEN,
    )
    scrape_interval_s: float = Field(default=15.0, gt=0, description="Scrape interval, seconds.")
    drift: Drift = Field(default_factory=Drift, description="Drift thresholds.")
    alerts: list[AlertRule] = Field(default_factory=list, description="Alert rules.")
