"""``loom status``: every recipe applied in a workspace, from the state file alone (no engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.state import WorkspaceState


def recipes(workspace: Path) -> list[dict[str, Any]]:
    """One row per applied recipe: model, versions, weights, rollout, endpoint, last apply."""
    doc = WorkspaceState(workspace).read()
    return [_row(name, section, doc["rollouts"]) for name, section in sorted(doc["recipes"].items())]


def _row(name: str, section: dict[str, Any], rollouts: dict[str, Any]) -> dict[str, Any]:
    steps = section.get("steps", {})
    model_id = section.get("model_id") or name
    deploy = (steps.get("serving.deploy") or {}).get("outputs") or {}
    row = {"recipe": name, "recipe_file": section.get("recipe_file"), "model_id": model_id,
           "stable_version": deploy.get("stable_version"),
           "candidate_version": deploy.get("candidate_version"), "candidate_weight": 0,
           "rollout": "none", "endpoint": deploy.get("url"),
           "last_applied_at": section.get("applied_at"), "steps": len(steps)}
    rollout = rollouts.get(section.get("app_name") or model_id)
    if rollout:
        config = rollout.get("user_config") or {}
        slots = config.get("slots") or {}
        row.update(rollout=rollout.get("status", "none"),
                   stable_version=(slots.get("stable") or {}).get("version", row["stable_version"]),
                   candidate_version=(slots.get("candidate") or {}).get("version"),
                   candidate_weight=config.get("candidate_weight", 0))
    return row


def detail(workspace: Path, recipe: str) -> dict[str, Any]:
    """One recipe in detail: its row and every applied step with its fingerprint and time."""
    doc = WorkspaceState(workspace).read()
    section = doc["recipes"].get(recipe)
    if section is None:
        return {"recipe": recipe, "applied": False}
    steps = [{"address": a, "kind": e.get("kind"), "fingerprint": e.get("fingerprint"),
              "applied_at": e.get("applied_at")} for a, e in section.get("steps", {}).items()]
    return {**_row(recipe, section, doc["rollouts"]), "applied": True, "applied_steps": steps}


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width table (the text ``loom status`` prints)."""
    if not rows:
        return "No recipe is applied in this workspace yet. Apply one with `loom launch recipe=NAME`."
    head = ("RECIPE", "MODEL", "STABLE", "CANDIDATE", "WEIGHT", "ROLLOUT", "LAST APPLY", "ENDPOINT")
    cells = [(r["recipe"], r["model_id"], r["stable_version"] or "-", r["candidate_version"] or "-",
              f"{r['candidate_weight']:g}%" if r["candidate_version"] else "-", r["rollout"],
              r["last_applied_at"] or "-", r["endpoint"] or "-") for r in rows]
    widths = [max(len(str(c[i])) for c in [head, *cells]) for i in range(len(head))]
    return "\n".join("  ".join(str(c[i]).ljust(widths[i]) for i in range(len(head))).rstrip()
                     for c in [head, *cells])
