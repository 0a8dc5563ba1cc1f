"""``loom stream`` output for people (``--json`` prints the same dict for machines)."""

from __future__ import annotations

from typing import Any

_COLUMNS = ("consumer", "ready", "events_per_s", "ok", "degraded", "dead_letter", "duplicate",
            "claimed", "stable")


def render_status(st: dict[str, Any]) -> str:
    """The streams, the group's lag and each consumer's counts; or what ``down`` stopped."""
    if "stopped" in st:
        n = len(st["stopped"])
        return (f"Stopped {n} stream consumer(s) of {st['model_id']}; the streams and their data "
                "stay on the bus.")
    names, group, lengths = st["streams"], st["group"], st["lengths"]
    lines = [f"stream {st['model_id']}: {names['source']} -> {names['sink']} "
             f"(dead letters: {names['dead_letter']})",
             f"group {names['group']}: lag {_n(group.get('lag'))}, pending {_n(group.get('pending'))}; "
             f"source {_n(lengths['source'])} events, sink {_n(lengths['sink'])} results, "
             f"{_n(lengths['dead_letter'])} dead letters"]
    consumers = st["consumers"]
    if not consumers:
        lines.append("no consumers run (`loom stream up recipe=NAME` starts them)")
        return "\n".join(lines)
    rows = [[str(c.get(k, "")) for k in _COLUMNS] for c in consumers]
    widths = [max(len(k), *(len(r[i]) for r in rows)) for i, k in enumerate(_COLUMNS)]
    lines.append("  ".join(k.ljust(w) for k, w in zip(_COLUMNS, widths)))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    online_only = [f"  {c['consumer']}: {', '.join(c['push_online_only'])} (its node cannot read the "
                   "source file; the offline store does not get these rows)"
                   for c in consumers if c.get("push_online_only")]
    if online_only:
        lines += ["pushed to the online store only:", *online_only]
    errors = [f"  {c['consumer']}: {c['last_error']}" for c in consumers if c.get("last_error")]
    if errors:
        lines += ["last errors:", *errors]
    return "\n".join(lines)


def _n(value: Any) -> str:
    return "?" if value is None else f"{value:,}"
