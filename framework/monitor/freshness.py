"""Freshness for `loom monitor`: the age of the online values served, per feature view.

The prediction log records the values a model read, not how old they were in the online store;
the replicas export that age live (``ray_loom_feature_age_seconds{view,stat}``). With
``monitoring.prometheus_url`` set, `loom monitor` reads it back from Prometheus over the same
window as the log, and flags a view whose mean age passed ``monitoring.drift.max_feature_age_s``
(the ``stale_features`` alert's threshold).
"""

from __future__ import annotations

from typing import Any

from framework.backends.prometheus_api import instant
from framework.backends.promql import promql_string
from framework.errors import BackendError

#: The range read when the log window is "all" (Prometheus' default retention).
ALL_S = 15 * 86_400


def freshness_views(url: str, model_id: str, window_s: float | None,
                    max_age_s: float | None) -> dict[str, Any]:
    """``{"source", "views": [{view, mean_age_s, max_age_s, flagged}]}``, or ``{"source",
    "error"}`` when Prometheus could not say (the rest of the report stands)."""
    span = f"{int(window_s or ALL_S)}s"
    model = f"model={promql_string(model_id)}"
    why = "for the freshness in `loom monitor recipe=NAME`"
    try:
        means = instant(url, "avg by (view) (avg_over_time(ray_loom_feature_age_seconds"
                             f'{{{model},stat="mean"}}[{span}]))', why=why)
        tops = instant(url, "max by (view) (max_over_time(ray_loom_feature_age_seconds"
                            f'{{{model},stat="max"}}[{span}]))', why=why)
    except BackendError as exc:
        return {"source": url, "error": str(exc)}
    mean = {labels.get("view", ""): value for labels, value in means}
    top = {labels.get("view", ""): value for labels, value in tops}
    views = [{"view": v, "mean_age_s": mean.get(v), "max_age_s": top.get(v),
              "flagged": max_age_s is not None and (mean.get(v) or 0.0) > max_age_s}
             for v in sorted(set(mean) | set(top))]
    return {"source": url, "views": views, "max_age_s": max_age_s}
