"""Drift and data quality of logged traffic against each version's training reference profile.

The replicas bin live rows the same way (``framework.serving.drift``): a row is encoded as the
version's model read it (categories coded with the version's frozen category sets; an unseen
category or a text value for a numeric feature is missing), each value falls in the profile's bins
(``profile.bin_of``), and PSI compares the bin counts (``profile.psi``).
"""

from __future__ import annotations

from typing import Any

from framework.backends.model_registry.profile import bins_of, psi
from framework.compile.contract import Contract


def encode(values: Any, categories: list[str] | None) -> Any:
    """A logged feature column as the version's model read it: float64, NaN for missing.

    ``categories``: the version's frozen category set (a categorical feature), in code order.
    """
    import numpy as np
    import pandas as pd

    s = pd.Series(values)
    if categories is not None:
        codes = {c: float(i) for i, c in enumerate(categories)}
        text = s.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
        return text.map(codes).astype(np.float64).to_numpy()
    if s.dtype == object:
        s = s.map(lambda v: np.nan if isinstance(v, str) else v)
    return pd.to_numeric(s, errors="coerce").astype(np.float64).to_numpy()


def feature_row(name: str, column: Any, hist: dict[str, Any] | None,
                categories: list[str] | None) -> dict[str, Any]:
    """PSI, missing and out-of-range shares of one feature's logged values."""
    import numpy as np

    raw_missing = int(column.isna().sum()) if column is not None else 0
    x = encode(column, categories)
    rows = int(x.size)
    finite = x[np.isfinite(x)]
    out: dict[str, Any] = {"feature": name, "rows": rows, "missing": (rows - finite.size) / rows
                           if rows else None, "out_of_range": None, "psi": None}
    if categories is not None:
        out["unseen"] = (rows - finite.size - raw_missing) / rows if rows else None
    edges = (hist or {}).get("edges") or []
    if len(edges) >= 2 and rows:
        b, outside = bins_of(edges, finite)
        counts = np.bincount(b, minlength=len(edges) - 1).tolist()
        out["out_of_range"] = float(outside.sum()) / rows
        out["psi"] = psi(hist["counts"], counts)
    return out


def score_row(scores: Any, hist: dict[str, Any] | None) -> dict[str, Any]:
    """PSI of the logged scores (the model's, not a fallback's) against the training predictions."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    edges = (hist or {}).get("edges") or []
    value = None
    if len(edges) >= 2 and s.size:
        b, _ = bins_of(edges, s)
        value = psi(hist["counts"], np.bincount(b, minlength=len(edges) - 1).tolist())
    return {"rows": int(s.size), "psi": value,
            "mean": float(s.mean()) if s.size else None,
            "reference_mean": (hist or {}).get("mean")}


def version_report(frame: Any, version: str, profile: dict[str, Any] | None,
                   contract: Contract | None, feature_names: list[str],
                   thresholds: Any) -> dict[str, Any]:
    """One version's table: a row per feature, one for the score, each flagged against
    ``thresholds`` (``monitoring.drift``) once the version has ``min_rows`` rows."""
    names = contract.names if contract is not None else list(feature_names)
    cats = ({f.name: list(f.categories or []) for f in contract.features if f.categorical}
            if contract is not None else {})
    rows = int(len(frame))
    enough = rows >= thresholds.min_rows
    report: dict[str, Any] = {"version": version, "rows": rows, "enough_rows": enough,
                              "profile": profile is not None, "features": [], "score": None,
                              "flagged": False}
    if profile is None:
        report["note"] = ("no reference profile in this version's MLflow run (loom/reference_profile"
                          ".json): trained before profiles existed, or not by Loom; nothing to compare")
        return report
    hists = profile.get("features", {})
    # The rows a model version answered, as the replicas bin them: a fallback's answer (degraded)
    # is counted in ``degraded_rows`` only.
    model_rows = frame[~frame["degraded"].astype(bool)] if rows else frame
    report["degraded_rows"] = rows - int(len(model_rows))
    for name in names:
        column = model_rows[name] if name in model_rows.columns else None
        if column is None:
            report["features"].append({"feature": name, "rows": rows, "psi": None, "missing": None,
                                       "out_of_range": None, "flags": [], "note": "not in the log"})
            continue
        row = feature_row(name, column, hists.get(name), cats.get(name))
        row["flags"] = _flags(row, thresholds) if enough else []
        report["features"].append(row)
    score = score_row(model_rows["score"], profile.get("prediction"))
    score["flags"] = (["drift"] if enough and score["psi"] is not None
                      and score["psi"] > thresholds.psi_threshold else [])
    report["score"] = score
    report["flagged"] = bool(score["flags"]) or any(r["flags"] for r in report["features"])
    return report


def _flags(row: dict[str, Any], t: Any) -> list[str]:
    flags = []
    if row["psi"] is not None and row["psi"] > t.psi_threshold:
        flags.append("drift")
    if row["missing"] is not None and row["missing"] > t.missing_threshold:
        flags.append("missing")
    if row["out_of_range"] is not None and row["out_of_range"] > t.out_of_range_threshold:
        flags.append("out_of_range")
    return flags


def drift_report(frame: Any, references: dict[str, tuple[dict | None, Contract | None]],
                 feature_names: list[str], thresholds: Any) -> dict[str, Any]:
    """Every logged version's table, newest version first; rows no version answered are counted."""
    versioned = frame[frame["version"].notna()] if len(frame) else frame
    versions = sorted(versioned["version"].astype(str).unique(), key=_version_key, reverse=True)
    out = [version_report(versioned[versioned["version"].astype(str) == v], v,
                          *references.get(v, (None, None)), feature_names, thresholds)
           for v in versions]
    return {"versions": out, "unversioned_rows": int(len(frame) - len(versioned)),
            "flagged": any(v["flagged"] for v in out),
            "thresholds": {"psi": thresholds.psi_threshold, "missing": thresholds.missing_threshold,
                           "out_of_range": thresholds.out_of_range_threshold,
                           "min_rows": thresholds.min_rows}}


def _version_key(v: str) -> tuple[int, Any]:
    return (0, int(v)) if v.isdigit() else (1, v)
