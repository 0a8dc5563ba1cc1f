"""The ``monitoring`` section: the replicas' metrics and the alert rules rendered for Prometheus."""

from typing import Literal

from pydantic import Field

from framework.spec.base import Name, Spec


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

    enabled: bool = Field(
        default=True, description="Export the replicas' Prometheus metrics (ray_loom_*) and render "
        "the alert rules; false turns both off.")
    scrape_interval_s: float = Field(default=15.0, gt=0, description="Scrape interval, seconds.")
    alerts: list[AlertRule] = Field(default_factory=list, description="Alert rules.")
