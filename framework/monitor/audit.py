"""Drift found by `loom monitor`, written to the model's rollout audit log when it changes.

``monitoring.on_drift`` acts during a rollout: the controller gates the candidate on each analysis
window. Outside one there is no candidate to hold or roll back, so the action is recorded instead:
each time `loom monitor` finds a version's drift flags different from the last record of that
version (drift begins, moves to other features, or clears), one ``drift`` line goes to
``.loom/rollout/<model>/audit.jsonl`` beside the rollout decisions, with the PSIs behind it and
what ``on_drift`` would do. Running `loom monitor` on a schedule keeps that history; an unchanged
finding writes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from framework.rollout.state import StateStore


def drift_findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per judged version (enough rows, a profile): its flags per feature and for the score."""
    out = {}
    for v in report.get("versions", []):
        if not v.get("enough_rows") or not v.get("profile"):
            continue
        flags = {r["feature"]: sorted(r["flags"]) for r in v["features"] if r.get("flags")}
        score = v.get("score") or {}
        if score.get("flags"):
            flags["score"] = sorted(score["flags"])
        out[str(v["version"])] = {
            "flags": flags,
            "psi": {**{r["feature"]: r["psi"] for r in v["features"] if r.get("flags")},
                    **({"score": score.get("psi")} if score.get("flags") else {})},
        }
    return out


def record_drift(workspace: Path, model_id: str, report: dict[str, Any], on_drift: str,
                 now: float | None = None) -> list[dict[str, Any]]:
    """Append a ``drift`` audit line for every version whose flags changed since its last one;
    returns the lines written."""
    store = StateStore(workspace, model_id)
    last: dict[str, dict[str, Any]] = {}
    for rec in store.read_audit():
        if rec.get("event") == "drift":
            last[str(rec.get("version"))] = rec.get("flags") or {}
    rollout = store.load()
    running = rollout is not None and rollout.running
    written = []
    for version, found in drift_findings(report).items():
        if found["flags"] == last.get(version, {}):
            continue
        record = {"ts": now if now is not None else time.time(), "event": "drift",
                  "model_id": model_id, "version": version, "flags": found["flags"],
                  "psi": found["psi"], "action": on_drift,
                  "window_s": (report.get("log") or {}).get("window_s"),
                  "reason": _reason(version, found["flags"], on_drift, running, rollout)}
        store.audit(record)
        written.append(record)
    return written


def _reason(version: str, flags: dict[str, list[str]], on_drift: str, running: bool,
            rollout: Any) -> str:
    if not flags:
        return f"version {version}: no feature or score is flagged any more"
    what = ", ".join(f"{name} ({'/'.join(f)})" for name, f in sorted(flags.items()))
    text = f"version {version}: {what} past monitoring.drift's thresholds in the prediction log"
    if running and rollout.candidate_version == version:
        return text + (f"; the rollout's analysis windows judge it (monitoring.on_drift: "
                       f"{on_drift})")
    return text + (f"; no rollout of it runs, so monitoring.on_drift ({on_drift}) only records it")
