"""Renders a plan as text, like ``terraform plan``: one line per step, a summary, or 'No changes.'."""

from __future__ import annotations

from typing import Any

from framework.compile.fingerprint import short
from framework.compile.plan import Plan, Step

SYMBOL = {"create": "+", "update": "~", "delete": "-", "no-op": " "}
SHOWN_ATTRS = ("join_keys", "source", "fields", "features", "views", "label", "offline_store",
               "objective", "rounds", "workers", "trials", "metric", "gates", "model_name", "alias",
               "route", "replicas", "weight", "phase", "hold_s", "shadow_percent", "alerts")


def _attrs(step: Step) -> str:
    parts = []
    for key in SHOWN_ATTRS:
        if key in step.attrs and step.attrs[key] not in (None, [], {}, ""):
            parts.append(f"{key}={_fmt(step.attrs[key])}")
    return " ".join(parts)


def _fmt(value: Any, most: int = 4) -> str:
    """Short form: at most ``most`` items of a list or dict, then '+N more'."""
    if isinstance(value, dict):
        items = [f"{k}: {v}" for k, v in value.items()]
    elif isinstance(value, list):
        items = [str(v) for v in value]
    else:
        return str(value)
    more = f", +{len(items) - most} more" if len(items) > most else ""
    return ("{%s}" if isinstance(value, dict) else "[%s]") % (", ".join(items[:most]) + more)


def render(plan: Plan, verbose: bool = False) -> str:
    """The plan as text; deterministic for the same plan."""
    width = max((len(s.address) for s in plan.steps), default=10)
    lines = [f"Loom plan for recipe '{plan.recipe_name}' (recipe {short(plan.recipe_fingerprint)})", ""]
    for step in plan.steps:
        if step.action == "no-op" and not verbose:
            continue
        change = ""
        # An update with unchanged inputs is one of what serves (a rejected version): say why.
        same = step.action == "update" and step.observed_fingerprint == step.fingerprint
        if step.action == "update" and not same:
            change = f"  ({short(step.observed_fingerprint, 8)} -> {short(step.fingerprint, 8)})"
        why = step.reason and (step.action == "delete" or same)
        what = f"({step.reason})" if why else _attrs(step)
        lines.append(f"  {SYMBOL[step.action]} {step.address:<{width}}  {step.action:<7} {what}{change}"
                     .rstrip())
    counts = {a: sum(1 for s in plan.steps if s.action == a) for a in SYMBOL}
    if not plan.has_changes:
        lines.append("No changes. The running system matches the recipe.")
    else:
        lines += ["", f"Plan: {counts['create']} to create, {counts['update']} to update, "
                      f"{counts['delete']} to delete, {counts['no-op']} unchanged."]
    return "\n".join(lines)
