"""The two reports of `loom monitor`: drift over a window of the log, and accuracy with labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.monitor.logread import LogWindow, no_log_message, read_window

#: What the log cannot say about freshness, said instead of a number it does not have.
FRESHNESS_NOTE = ("Freshness is not in the prediction log: it records the values served, not their "
                  "age in the online store. The replicas export it live as "
                  "ray_loom_feature_age_seconds (monitoring.drift.max_feature_age_s alerts on it); "
                  "with monitoring.prometheus_url set, `loom monitor recipe=NAME` reads it back from Prometheus.")


def log_window(recipe: Any, workspace: Path, window_s: float | None, now: float | None = None) -> LogWindow:
    """The recipe's model's log rows within ``window_s`` (the whole log for None)."""
    from framework.backends.ray_serve.config import entity_keys
    from framework.serving.predlog import log_dir

    return read_window(log_dir(workspace, recipe.model_id), window_s, list(entity_keys(recipe)),
                       recipe.feature_names(), now)


def _versions(window: LogWindow) -> list[str]:
    v = window.frame["version"]
    return sorted(v[v.notna()].astype(str).unique())


def monitor_report(recipe: Any, workspace: Path, window_s: float | None,
                   references: Any = None, now: float | None = None) -> dict[str, Any]:
    """Per version, per feature: PSI against the version's reference profile, missing and
    out-of-range shares, and the score's PSI, flagged against ``monitoring.drift``.

    ``references``: ``versions -> ({version: (profile, contract)}, {version: why missing})``;
    default: the recipe's MLflow registry.
    """
    from framework.monitor.drift import drift_report
    from framework.monitor.references import version_references

    window = log_window(recipe, Path(workspace), window_s, now)
    out: dict[str, Any] = {"model_id": recipe.model_id, "log": window.about(),
                           "freshness": FRESHNESS_NOTE}
    m = recipe.monitoring
    if m.prometheus_url:  # the live age gauge, read back over the same window
        from framework.monitor.freshness import freshness_views

        out["freshness_views"] = freshness_views(m.prometheus_url, recipe.model_id, window_s,
                                                 m.drift.max_feature_age_s)
    if window.rows == 0:
        out.update(message=no_log_message(window.directory, recipe.model_id, window_s), versions=[],
                   flagged=False)
        return out
    fetch = references or (lambda vs: version_references(recipe, Path(workspace), vs))
    found, unknown = fetch(_versions(window))
    out.update(drift_report(window.frame, found, recipe.feature_names(), recipe.monitoring.drift))
    for v in out["versions"]:
        if v["version"] in unknown:
            v["note"] = f"not in the registry: {unknown[v['version']]}"
    return out


@dataclass(frozen=True)
class EvaluateRequest:
    """`loom monitor evaluate`'s choices."""

    labels: Path
    label_column: str | None = None
    time_column: str | None = None  # None: the label source's timestamp_field, label_time, ...
    window_s: float | None = None


def evaluate_report(recipe: Any, workspace: Path, req: EvaluateRequest,
                    now: float | None = None) -> dict[str, Any]:
    """The log joined with delayed labels: the task's metrics overall, per version, per day, and per
    ``monitoring.fairness.group_by`` group with the largest gap flagged against ``max_gap``.

    Raises:
        DataError: no log in the window, or a labels file that cannot be read or joined.
    """
    from framework.backends.ray_serve.config import entity_keys
    from framework.errors import DataError
    from framework.monitor.evaluate import LabelSpec, evaluate, join, read_labels, truth_and_answers

    window = log_window(recipe, Path(workspace), req.window_s, now)
    if window.rows == 0:
        raise DataError(no_log_message(window.directory, recipe.model_id, req.window_s))
    spec = LabelSpec(path=req.labels, column=req.label_column or recipe.training.label.column,
                     time_column=req.time_column, time_candidates=_time_candidates(recipe))
    joined, info = join(window.frame, read_labels(spec), spec, list(entity_keys(recipe)))
    frame = truth_and_answers(joined, recipe.task, recipe.serving.labels, req.labels)
    fair = recipe.monitoring.fairness
    out = {"model_id": recipe.model_id, "log": window.about(), "labels": str(req.labels),
           "label_column": spec.column, "join": info}
    out.update(evaluate(frame, recipe.task, list(fair.group_by) if fair else None,
                        fair.max_gap if fair else 0.0))
    out["flagged"] = bool(out.get("fairness", {}).get("flagged"))
    return out


def _time_candidates(recipe: Any) -> tuple[str, ...]:
    """Columns read as the label time when ``--time-column`` is not given, first found wins."""
    source = recipe.data.sources.get(recipe.training.label.source)
    own = getattr(source, "timestamp_field", None)
    return tuple(dict.fromkeys(c for c in (own, "label_time", "event_timestamp", "timestamp") if c))
