"""`loom monitor` output for people (``--json`` prints the same dict for machines)."""

from __future__ import annotations

from typing import Any


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(header), *(line(r) for r in rows)]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _log_line(log: dict[str, Any]) -> str:
    span = f", {log['first'][:19]} .. {log['last'][:19]} UTC" if log.get("first") else ""
    window = "the whole log" if log["window_s"] is None else f"the last {_window(log['window_s'])}"
    return (f"Prediction log {log['directory']}: {log['rows']:,} rows in {window} "
            f"({log['files']} files, {log['bytes'] / 1e6:.1f} MB read){span}")


def _window(seconds: float) -> str:
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def render_monitor(report: dict[str, Any]) -> str:
    """Per version: a row per feature (PSI, missing, out of range, flags) and one for the score."""
    lines = [_log_line(report["log"])]
    if report.get("message"):
        return "\n".join([*lines, report["message"]])
    t = report["thresholds"]
    lines.append(f"Flags: PSI > {t['psi']:g} (drift), missing > {_pct(t['missing'])}, out of range > "
                 f"{_pct(t['out_of_range'])}; only for a version with at least {t['min_rows']} rows "
                 "(monitoring.drift).")
    for v in report["versions"]:
        lines.append("")
        few = "" if v["enough_rows"] else f"; fewer than {t['min_rows']}: nothing flagged"
        lines.append(f"version {v['version']}: {v['rows']:,} rows{few}")
        if v.get("note"):
            lines.append(f"  {v['note']}")
        if not v["features"]:
            continue
        rows = [[f["feature"], _num(f["psi"]), _pct(f["missing"]), _pct(f["out_of_range"]),
                 _pct(f.get("unseen")) if "unseen" in f else "", ", ".join(f["flags"]) or f.get("note", "")]
                for f in v["features"]]
        s = v["score"]
        mean = f"mean {_num(s['mean'])} (training {_num(s['reference_mean'])})"
        rows.append(["(score)", _num(s["psi"]), "", "", "", ", ".join(s["flags"]) or mean])
        lines += _table(["feature", "psi", "missing", "out_of_range", "unseen", "flags"], rows)
    if report.get("unversioned_rows"):
        lines.append(f"\n{report['unversioned_rows']:,} rows were answered by a fallback without a "
                     "model version (not compared).")
    lines.append("")
    lines.append("Drift flagged." if report["flagged"] else "Nothing flagged.")
    for rec in report.get("recorded") or []:
        lines.append(f"Recorded in the rollout audit log: {rec['reason']}.")
    lines += _freshness(report)
    return "\n".join(lines)


def _freshness(report: dict[str, Any]) -> list[str]:
    """Per feature view, the age of the online values served, from Prometheus; else the note."""
    fresh = report.get("freshness_views")
    if not fresh:
        return [report["freshness"]]
    if "error" in fresh:
        return [f"Freshness: {fresh['error']}"]
    if not fresh["views"]:
        return [f"Freshness: Prometheus at {fresh['source']} holds no ray_loom_feature_age_seconds "
                "of this model in the window (only Feast lookups with monitoring.drift on export it)."]
    limit = fresh.get("max_age_s")
    head = f"Freshness (Prometheus at {fresh['source']}" + (
        f"; flagged: mean age > {limit:g} s, monitoring.drift.max_feature_age_s):" if limit
        else "; no monitoring.drift.max_feature_age_s to flag against):")
    rows = [[v["view"], _num(v["mean_age_s"], 1), _num(v["max_age_s"], 1),
             "stale" if v["flagged"] else ""] for v in fresh["views"]]
    return [head, *_table(["view", "mean age s", "max age s", "flags"], rows)]


_BINARY = ("rows", "auc", "logloss", "accuracy", "positive_rate", "label_rate")
_COLUMNS = {"binary": _BINARY, "multiclass": ("rows", "auc", "logloss", "accuracy"),
            "regression": ("rows", "rmse", "mae", "mean_prediction", "mean_label")}
_RATES = {"accuracy", "positive_rate", "label_rate"}


def _metric_rows(by: dict[str, dict[str, Any]], columns: tuple[str, ...]) -> list[list[str]]:
    return [[name] + [f"{m['rows']:,}" if c == "rows" else
                      (_pct(m.get(c)) if c in _RATES else _num(m.get(c), 4)) for c in columns]
            for name, m in by.items()]


def render_evaluate(report: dict[str, Any]) -> str:
    """Metrics overall, per version, per day; the fairness groups and gaps when declared."""
    j, cols = report["join"], _COLUMNS[report["task"]]
    lines = [_log_line(report["log"]),
             f"Labels {report['labels']} (column '{report['label_column']}'): {j['label_rows']:,} "
             f"rows, joined on {j['joined_on']}.",
             f"Joined {j['joined']:,} of {j['log_rows']:,} logged answers; {j['unjoined']:,} have no "
             "label (yet)." + (f" {j['ambiguous']:,} of them share their request_id with other "
                                "instances of one request: add the entity keys to the labels to "
                                "join them." if j.get("ambiguous") else ""), ""]
    lines += _table([report["task"], *cols], _metric_rows({"all": report["overall"]}, cols))
    lines += ["", "per version:"] + _table(["version", *cols], _metric_rows(report["versions"], cols))
    lines += ["", "per day (UTC):"] + _table(["day", *cols], _metric_rows(report["days"], cols))
    fair = report.get("fairness")
    if fair:
        lines += ["", f"fairness by {', '.join(fair['group_by'])} (gap flagged above "
                  f"{_pct(fair['max_gap'])}; groups under {fair['min_group_rows']} rows left out):"]
        lines += _table(["group", *cols], _metric_rows(fair["groups"], cols))
        for measure, g in fair["gaps"].items():
            mark = "FLAGGED" if g["flagged"] else "ok"
            lines.append(f"  largest {measure} gap: {_pct(g['gap'])} ({g['highest']} vs {g['lowest']}): "
                         f"{mark}")
        if fair.get("note"):
            lines.append(f"  {fair['note']}")
        elif not fair["gaps"]:
            lines.append("  fewer than two groups large enough to compare: no gap.")
    return "\n".join(lines)
