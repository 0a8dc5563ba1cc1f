"""``loom rollout status``: the rollout's step, weights, last analyses and timeline, from files only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from framework.rollout import health
from framework.rollout.phases import RolloutSpec
from framework.rollout.state import StateStore

#: Audit events shown in the timeline ("traffic" lines repeat what "step" says).
TIMELINE_EVENTS = ("start", "step", "analysis", "promoted", "rolled_back", "aborted", "superseded",
                   "resumed", "error", "promote_error", "tag_error", "controller_restarted",
                   "controller_hung", "controller_revived")


def status(workspace: Path | str, model_id: str, last: int = 3,
           now: float | None = None) -> dict[str, Any]:
    """The rollout of ``model_id`` as a JSON-able dict; works without Ray (reads the workspace).

    Args:
        workspace: the Loom workspace directory (``env.workspace_dir``).
        model_id: the model (``recipe.model_id``).
        last: how many of the latest analyses to include in full.
        now: the time the controller's heartbeat is judged at (default: the clock's).

    Returns:
        ``{"status": "none"}`` when the model never rolled out; else the status (running, promoted,
        rolled_back, aborted, superseded), why, the current phase, the live weights, failures, the
        requests gathered so far while quiet intervals accumulate (``accumulation``, else None),
        the last analyses, the controller's health (``controller``: its heartbeat, whether it
        is stalled, and the problem it retries on, if any) and a timeline of every decision of
        this rollout.
    """
    store = StateStore(workspace, model_id)
    st = store.load()
    if st is None:
        return {"model_id": model_id, "status": "none", "timeline": [], "drift": _drift(store)}
    spec = RolloutSpec.from_dict(st.spec)
    cfg = st.user_config or {}
    index = min(st.phase_index, len(spec.phases) - 1)
    return {
        "model_id": model_id, "rollout_id": st.rollout_id, "strategy": spec.strategy,
        "status": st.status, "reason": st.reason,
        "stable_version": st.stable_version, "candidate_version": st.candidate_version,
        "phase": {"index": index + 1, "of": len(spec.phases), "address": spec.phases[index].address,
                  "started_at": st.phase_started_at},
        "weights": {"candidate_weight": cfg.get("candidate_weight"),
                    "shadow_percent": cfg.get("shadow_percent"),
                    "config_version": st.config_version, "live": st.applied},
        "failures": st.failures, "failure_limit": spec.failure_limit,
        "accumulation": _accumulation(st.accumulation, spec, index) if st.running else None,
        "started_at": st.started_at, "finished_at": st.finished_at, "updated_at": st.updated_at,
        "controller": health.report(st, time.time() if now is None else now),
        "last_analyses": st.analyses[-last:],
        "timeline": [_line(r) for r in store.read_audit(st.rollout_id)
                     if r.get("event") in TIMELINE_EVENTS],
        "drift": _drift(store),
    }


def _drift(store: StateStore) -> list[dict[str, Any]]:
    """The last ``drift`` record of each version `loom monitor` found drifting, if it still is."""
    last: dict[str, dict[str, Any]] = {}
    for rec in store.read_audit():
        if rec.get("event") == "drift":
            last[str(rec.get("version"))] = rec
    return [rec for rec in last.values() if rec.get("flags")]


def _accumulation(acc: dict[str, Any] | None, spec: RolloutSpec,
                  index: int) -> dict[str, Any] | None:
    """The quiet intervals being accumulated, with how many requests the judgement still needs."""
    if not acc:
        return None
    need = spec.analysis.min_requests
    return {**acc, "min_requests": need, "needed": max(0, need - int(acc["n_candidate"])),
            "role": spec.phases[index].role}


def _line(rec: dict[str, Any]) -> dict[str, Any]:
    event = rec["event"]
    if event == "analysis":
        text = f"{rec.get('phase')} at {rec.get('weight'):g}%: {rec.get('verdict')} ({rec.get('reason')})"
    elif event == "step":
        text = (f"{rec.get('phase')}: candidate weight {rec.get('weight'):g}%, shadow "
                f"{rec.get('shadow_percent'):g}%, hold {rec.get('hold_s'):g} s")
    elif event == "start":
        text = (f"{rec.get('strategy')} rollout of version {rec.get('candidate_version')} "
                f"against {rec.get('stable_version')}")
    else:
        text = rec.get("reason") or rec.get("error") or ""
    return {"ts": rec["ts"], "event": event, "text": text}


def format_status(s: dict[str, Any]) -> str:
    """Human text for ``loom rollout status`` (the CLI prints it)."""
    drift = [f"  drift     {time.strftime('%Y-%m-%d %H:%M', time.gmtime(r['ts']))} UTC "
             f"{r['reason']}" for r in s.get("drift") or []]
    if s["status"] == "none":
        return "\n".join([f"{s['model_id']}: no rollout yet.", *drift])
    w, p = s["weights"], s["phase"]
    lines = [
        f"{s['model_id']}: {s['strategy']} rollout of version {s['candidate_version']} "
        f"(stable {s['stable_version']}) is {s['status'].upper()}"
        + (f": {s['reason']}" if s["reason"] else ""),
        f"  step      {p['index']}/{p['of']} {p['address']}",
        f"  weights   candidate {w['candidate_weight']}%, shadow {w['shadow_percent']}%, "
        f"config_version {w['config_version']}{'' if w['live'] else ' (not yet live)'}",
        f"  failures  {s['failures']} of {s['failure_limit']} allowed",
    ]
    acc = s.get("accumulation")
    if acc:
        lines.append(
            f"  analysis  {acc['n_candidate']} of {acc['min_requests']} {acc['role']} requests so "
            f"far ({acc['intervals']} interval{'' if acc['intervals'] == 1 else 's'}); "
            f"{acc['needed']} more needed")
    lines += drift
    trouble = health.describe(s.get("controller") or {})
    if trouble:
        lines.append(f"  controller {trouble}")
    lines.append("  timeline")
    t0 = s["started_at"]
    lines += [f"    +{r['ts'] - t0:7.1f}s  {r['event']:<12} {r['text']}" for r in s["timeline"]]
    if s["finished_at"] is None:
        lines.append(f"  (updated {time.time() - s['updated_at']:.0f} s ago)")
    return "\n".join(lines)
