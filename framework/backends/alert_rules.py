"""Prometheus alert rules for one model: generated from the recipe's thresholds, beside its own alerts.

The generated rules (``monitoring.slo``, ``monitoring.drift``) are per model and version; each
names its threshold in its annotations. The user's ``monitoring.alerts`` are scoped to the model
(``promql.scope_to_model``) and rendered as written.
"""

from __future__ import annotations

from typing import Any

from framework.backends.promql import promql_string, scope_to_model


def duration(seconds: float) -> str:
    """A Prometheus duration: whole seconds as ``300s``, anything finer in milliseconds."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def _rule(name: str, expr: str, for_s: float, severity: str, model_id: str, summary: str,
          description: str = "") -> dict[str, Any]:
    annotations = {"summary": summary, **({"description": description} if description else {})}
    return {"alert": name, "expr": expr, "for": duration(for_s),
            "labels": {"severity": severity, "model": model_id}, "annotations": annotations}


def slo_rules(recipe: Any) -> list[dict[str, Any]]:
    """``high_error_rate`` (per model) and ``slow_predictions`` (per version) from ``monitoring.slo``."""
    slo, model_id = recipe.monitoring.slo, recipe.model_id
    sel, w = f"model={promql_string(model_id)}", duration(slo.window_s)
    rules = []
    if slo.max_error_rate is not None:
        # Per model, not per version: a request that fails before a version answers (the model
        # raised, a timeout) is counted with version="none", so a version's own rate never sees it.
        expr = (f'sum by (model) (rate(ray_loom_requests_total{{{sel},outcome="error"}}[{w}]))'
                f" / sum by (model) (rate(ray_loom_requests_total{{{sel}}}[{w}]))"
                f" > {slo.max_error_rate:g}")
        rules.append(_rule(
            "high_error_rate", expr, slo.for_s, "critical", model_id,
            f"More than {slo.max_error_rate * 100:.4g}% of {model_id}'s requests fail.",
            f"Error rate {{{{ $value | humanizePercentage }}}} over {w} (threshold "
            f"{slo.max_error_rate:g}, monitoring.slo.max_error_rate)."))
    if slo.max_p99_latency_ms is not None:
        expr = (f"histogram_quantile(0.99, sum by (model, version, le) "
                f"(rate(ray_loom_request_latency_ms_bucket{{{sel}}}[{w}]))) > {slo.max_p99_latency_ms:g}")
        rules.append(_rule(
            "slow_predictions", expr, slo.for_s, "warning", model_id,
            f"p99 latency of {model_id} version {{{{ $labels.version }}}} is above "
            f"{slo.max_p99_latency_ms:g} ms.",
            f"p99 {{{{ $value | printf \"%.1f\" }}}} ms over {w} (threshold "
            f"{slo.max_p99_latency_ms:g} ms, monitoring.slo.max_p99_latency_ms)."))
    return rules


def drift_rules(recipe: Any) -> list[dict[str, Any]]:
    """Feature PSI, score PSI, missing-feature and out-of-range rates, from ``monitoring.drift``.

    The PSI gauges are each replica's last ``window_s`` against the version's training profile
    (NaN until the window holds ``min_rows``, which compares false); the worst replica counts.
    The two rates are per version and feature over the same window, against the rows binned.
    """
    d, model_id = recipe.monitoring.drift, recipe.model_id
    if not d.enabled:
        return []
    sel, w, t = f"model={promql_string(model_id)}", duration(d.window_s), d.psi_threshold
    rows = f"sum by (model, version) (rate(ray_loom_monitored_rows_total{{{sel}}}[{w}]))"

    def rate_of(series: str, threshold: float) -> str:
        return (f"sum by (model, version, feature) (rate({series}{{{sel}}}[{w}]))"
                f" / on (model, version) group_left {rows} > {threshold:g}")

    feature = "{{ $labels.feature }}"
    version = "{{ $labels.version }}"
    stale = [] if d.max_feature_age_s is None else [_rule(
        "stale_features",
        f'max by (model, view) (ray_loom_feature_age_seconds{{{sel},stat="mean"}}) > {d.max_feature_age_s:g}',
        d.for_s, "warning", model_id,
        f"Online features of view {{{{ $labels.view }}}} served by {model_id} are "
        f"{{{{ $value | humanizeDuration }}}} old on average (threshold {d.max_feature_age_s:g} s).",
        "Mean age of the values served (now minus their event time): is materialization or the "
        "push path stalled? (monitoring.drift.max_feature_age_s)")]
    return [
        _rule("feature_drift", f"max by (model, version, feature) (ray_loom_feature_psi{{{sel}}}) > {t:g}",
              d.for_s, "warning", model_id,
              f"Feature {feature} of {model_id} version {version} drifted: PSI "
              f"{{{{ $value | printf \"%.3f\" }}}} > {t:g}.",
              f"PSI of the last {w} of traffic against the training reference profile (threshold "
              f"{t:g}, monitoring.drift.psi_threshold)."),
        _rule("score_drift", f"max by (model, version) (ray_loom_score_psi{{{sel}}}) > {t:g}",
              d.for_s, "warning", model_id,
              f"Scores of {model_id} version {version} drifted: PSI "
              f"{{{{ $value | printf \"%.3f\" }}}} > {t:g}.",
              f"PSI of the last {w} of scores against training's (threshold {t:g}, "
              "monitoring.drift.psi_threshold)."),
        _rule("missing_features", rate_of("ray_loom_feature_missing_total", d.missing_threshold),
              d.for_s, "warning", model_id,
              f"Feature {feature} of {model_id} version {version} is missing in "
              f"{{{{ $value | humanizePercentage }}}} of rows (threshold {d.missing_threshold:g}).",
              f"Rows without the feature over {w}, of the rows binned (monitoring.drift.missing_threshold)."),
        _rule("out_of_range_features", rate_of("ray_loom_feature_out_of_range_total", d.out_of_range_threshold),
              d.for_s, "warning", model_id,
              f"Feature {feature} of {model_id} version {version} is outside its training range in "
              f"{{{{ $value | humanizePercentage }}}} of rows (threshold {d.out_of_range_threshold:g}).",
              f"Values outside the range training saw, over {w}, of the rows binned "
              "(monitoring.drift.out_of_range_threshold)."),
    ] + stale


def user_rules(recipe: Any) -> list[dict[str, Any]]:
    """The recipe's own ``monitoring.alerts``, every Loom selector scoped to the model."""
    model_id = recipe.model_id
    return [_rule(a.name, scope_to_model(a.expr, model_id), a.for_s, a.severity, model_id,
                  a.summary or a.name) for a in recipe.monitoring.alerts]


def alert_rules(recipe: Any) -> dict[str, Any]:
    """Prometheus rule groups (the YAML form ``promtool check rules`` accepts) for one model.

    Args:
        recipe: The validated recipe; its monitoring section gives thresholds and alerts.

    Returns:
        ``{"groups": [...]}`` with one group, ``loom-<model>``, evaluated every scrape interval:
        the generated rules first, then the user's.
    """
    m = recipe.monitoring
    rules = slo_rules(recipe) + drift_rules(recipe) + user_rules(recipe)
    return {"groups": [{"name": f"loom-{recipe.model_id}", "interval": duration(m.scrape_interval_s),
                        "rules": rules}]}
