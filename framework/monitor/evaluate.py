"""Accuracy with delayed labels: the prediction log joined with labels that arrived later.

Join semantics (``docs/prediction-log.md``):

- labels with a ``request_id`` column join on it, one label per logged answer; a request of several
  instances logs one row per instance under one id, so the labels' entity keys (when they have
  them all) join too, and without them such rows are left out (counted as ambiguous);
- otherwise on the entity keys. With a time column, a logged answer takes its entity's first label
  at or after the answer's time (the outcome that followed it); answers after an entity's last
  label wait for a later one. Without a time column each entity has one label, which applies to
  every logged answer for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.errors import DataError
from framework.monitor.metrics import task_metrics

#: Groups smaller than this are reported but left out of the fairness gap (their rates are noise).
MIN_GROUP_ROWS = 30
#: A numeric group-by column with more distinct values than this is cut into quantile bins.
MAX_GROUPS = 10
QUANTILE_BINS = 5


@dataclass(frozen=True)
class LabelSpec:
    """Which labels file, and which of its columns are the label and the label time."""

    path: Path
    column: str
    time_column: str | None  # None: look for ``time_candidates``; "none": no time column
    time_candidates: tuple[str, ...] = ()


def read_labels(spec: LabelSpec) -> Any:
    """The labels file as a frame; parquet or CSV.

    Raises:
        DataError: no such file, an unknown format, or an unreadable file.
    """
    import pandas as pd

    path = spec.path
    if not path.is_file():
        raise DataError(f"{path}: no such labels file. Give --labels PATH: a parquet or CSV file with "
                        f"the label column '{spec.column}' and request_id or the entity keys.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path)
    except Exception as exc:  # pyarrow and pandas raise many kinds for a damaged file
        raise DataError(f"{path}: cannot read the labels file ({type(exc).__name__}: {exc}).") from exc
    raise DataError(f"{path}: labels must be parquet (.parquet) or CSV (.csv); got '{suffix or path.name}'.")


def join(log: Any, labels: Any, spec: LabelSpec, entity_keys: list[str]) -> tuple[Any, dict[str, Any]]:
    """Logged answers with their label in column ``label`` (and the labels file's other columns).

    Raises:
        DataError: no label column, no join keys, duplicate keys, or nothing joined.
    """
    path = spec.path
    cols = [str(c) for c in labels.columns]
    if spec.column not in labels.columns:
        raise DataError(f"{path}: no label column '{spec.column}' (columns: {', '.join(cols)}). The "
                        "label is the recipe's training.label.column; rename the column, or pass "
                        "--label-column NAME.")
    time_col = _time_column(labels, spec)
    labels = labels[labels[spec.column].notna()]
    if time_col is not None:
        labels = labels.assign(_label_time=_times(labels[time_col], time_col, path))
    labels = labels.rename(columns={spec.column: "label"})
    extra = [c for c in labels.columns if c in log.columns and c not in ("request_id", *entity_keys)]
    labels = labels.rename(columns={c: f"{c}_label" for c in extra})
    ambiguous = 0
    if "request_id" in labels.columns:
        # One request may carry several instances (one log row each, one request id): with the
        # entity keys in the labels too, they tell the instances apart; without, such rows are left out.
        keys = ["request_id", *(k for k in entity_keys if k in labels.columns)]
        if len(keys) == 1 + len(entity_keys) and len(keys) > 1:
            log, labels = _string_keys(log, keys[1:]), _string_keys(labels, keys[1:])
        else:
            keys = ["request_id"]
            shared = log["request_id"].duplicated(keep=False)
            ambiguous = int(shared.sum())
            log = log[~shared]
        how = " + ".join(keys)
        _unique(labels, keys, path)
        joined = log.merge(labels.astype({"request_id": str}), on=keys, how="inner")
    elif entity_keys and all(k in labels.columns for k in entity_keys):
        keys = list(entity_keys)
        log, labels = _string_keys(log, keys), _string_keys(labels, keys)
        if time_col is None:
            how = f"entity keys ({', '.join(keys)})"
            _unique(labels, keys, path, hint=" Add a time column (--time-column NAME) so each answer "
                    "takes the first label after it, or keep one label per entity.")
            joined = log.merge(labels, on=keys, how="inner")
        else:
            how = f"entity keys ({', '.join(keys)}), first label at or after each answer ('{time_col}')"
            joined = _forward_join(log, labels, keys)
    else:
        raise DataError(f"{path}: no join keys: the labels have neither request_id nor the entity "
                        f"keys {', '.join(entity_keys) or '(none)'} (columns: {', '.join(cols)}). Add "
                        "request_id (as the prediction log holds it) or the entity key columns.")
    info = {"joined_on": how, "log_rows": int(len(log)) + ambiguous, "label_rows": int(len(labels)),
            "joined": int(len(joined)), "unjoined": int(len(log) + ambiguous - len(joined)),
            "time_column": time_col, "ambiguous": ambiguous}
    if joined.empty:
        raise DataError(f"{path}: no label matched a logged answer ({len(log):,} logged answers, "
                        f"{len(labels):,} labels, joined on {how}). Check that the keys hold the "
                        "same values as the log's, that the labels come after the answers, and "
                        "--window (default: the whole log).")
    return joined.reset_index(drop=True), info


def _time_column(labels: Any, spec: LabelSpec) -> str | None:
    if spec.time_column == "none":
        return None
    if spec.time_column is not None:
        if spec.time_column not in labels.columns:
            raise DataError(f"{spec.path}: no time column '{spec.time_column}' (columns: "
                            f"{', '.join(map(str, labels.columns))}). Pass --time-column NAME, or "
                            "--time-column none to give each entity one label.")
        return spec.time_column
    return next((c for c in spec.time_candidates if c in labels.columns), None)


def _unique(labels: Any, keys: list[str], path: Path, hint: str = "") -> None:
    dup = labels.duplicated(subset=keys, keep=False)
    if dup.any():
        sample = labels.loc[dup, keys].head(3).to_dict("records")
        raise DataError(f"{path}: {int(dup.sum()):,} label rows share their {', '.join(keys)} "
                        f"(e.g. {sample}): a logged answer must match one label.{hint}")


def _string_keys(frame: Any, keys: list[str]) -> Any:
    """Entity keys as text on both sides: 42, 42.0 and '42' are one customer."""
    import pandas as pd

    out = frame.copy()
    for k in keys:
        s = out[k]
        if pd.api.types.is_float_dtype(s) and (s.dropna() % 1 == 0).all():
            s = s.astype("Int64")
        out[k] = s.astype(str).where(s.notna(), None)
    return out


def _times(column: Any, name: str, path: Path) -> Any:
    import pandas as pd

    try:
        return pd.to_datetime(column, utc=True)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: column '{name}' does not hold times ({exc}). Pass --time-column "
                        "NAME, or --time-column none.") from exc


def _forward_join(log: Any, labels: Any, keys: list[str]) -> Any:
    import pandas as pd

    ns = "datetime64[ns, UTC]"  # merge_asof wants one resolution on both sides (parquet: us)
    left = log.dropna(subset=keys).astype({"time": ns}).sort_values("time", kind="stable")
    right = (labels.dropna(subset=["_label_time", *keys]).astype({"_label_time": ns})
             .sort_values("_label_time", kind="stable"))
    merged = pd.merge_asof(left, right, left_on="time", right_on="_label_time", by=keys,
                           direction="forward", suffixes=("", "_label"))
    return merged[merged["label"].notna()].rename(columns={"_label_time": "label_time"})


def truth_and_answers(joined: Any, task: str, labels: Any, path: Path) -> Any:
    """``joined`` with ``y`` (the label) and ``yhat`` (the logged answer) in the task's terms.

    Binary: 1 for the positive label (``serving.labels.positive``, or 1 / true), 0 for the negative.

    Raises:
        DataError: a label value the task cannot read.
    """
    import numpy as np
    import pandas as pd

    out = joined.copy()
    if task == "binary":
        pos, neg = (labels.positive, labels.negative) if labels is not None else ("1", "0")
        y = out["label"].map(lambda v: _binary(v, pos, neg))
        _readable(out["label"], y, path, f"{neg!r} / {pos!r} (or 0 / 1, false / true)")
        out["y"] = y.astype(np.float64)
        out["yhat"] = out["prediction"].map(lambda v: _binary(v, pos, neg)).astype(np.float64)
    elif task == "multiclass":
        out["y"], out["yhat"] = out["label"].map(_category), out["prediction"].map(_category)
    else:
        y = pd.to_numeric(out["label"], errors="coerce")
        _readable(out["label"], y, path, "numbers")
        out["y"] = y.astype(np.float64)
        out["yhat"] = pd.to_numeric(out["prediction"], errors="coerce").astype(np.float64)
    return out


def _binary(value: Any, positive: str, negative: str) -> float | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    if text == positive or text.lower() in ("1", "1.0", "true"):
        return 1.0
    if text == negative or text.lower() in ("0", "0.0", "false"):
        return 0.0
    return None


def _category(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        f = float(value)
        return str(int(f)) if f == int(f) else str(f)
    except (TypeError, ValueError, OverflowError):
        return str(value)


def _readable(raw: Any, parsed: Any, path: Path, expected: str) -> None:
    bad = raw[parsed.isna()]
    if len(bad):
        raise DataError(f"{path}: {len(bad):,} labels are not {expected}: e.g. "
                        f"{sorted(set(map(str, bad.head(20))))[:5]}.")


def evaluate(frame: Any, task: str, group_by: list[str] | None, max_gap: float) -> dict[str, Any]:
    """Metrics overall, per version, per day, and (with ``group_by``) per group with the largest gap."""
    day = frame["time"].dt.strftime("%Y-%m-%d")
    out: dict[str, Any] = {
        "task": task, "overall": task_metrics(task, frame),
        "versions": {str(v): task_metrics(task, g) for v, g in frame.groupby(
            frame["version"].fillna("(fallback)").astype(str), sort=True)},
        "days": {d: task_metrics(task, g) for d, g in frame.groupby(day, sort=True)},
    }
    if group_by:
        out["fairness"] = fairness(frame, task, group_by, max_gap)
    return out


def fairness(frame: Any, task: str, group_by: list[str], max_gap: float) -> dict[str, Any]:
    """Per group: the task's metrics and positive rate; the largest gap between groups of at least
    ``MIN_GROUP_ROWS`` rows in positive rate and accuracy, flagged above ``max_gap``."""
    missing = [c for c in group_by if c not in frame.columns]
    if missing:
        raise DataError(f"monitoring.fairness.group_by: no column {', '.join(missing)} in the log or "
                        "the labels file (entity keys, features and labels columns can group).")
    keys = [_groups(frame[c]) for c in group_by]
    groups = {}
    for key, g in frame.groupby(keys, sort=True, dropna=False):
        name = ", ".join(f"{c}={v}" for c, v in zip(group_by, key if isinstance(key, tuple) else (key,)))
        groups[name] = task_metrics(task, g)
    gaps: dict[str, Any] = {}
    measures = ("positive_rate", "accuracy") if task == "binary" else (
        ("accuracy",) if task == "multiclass" else ())
    for m in measures:
        vals = {k: v[m] for k, v in groups.items() if v["rows"] >= MIN_GROUP_ROWS and v.get(m) is not None}
        if len(vals) >= 2:
            hi, lo = max(vals, key=vals.get), min(vals, key=vals.get)
            gap = vals[hi] - vals[lo]
            gaps[m] = {"gap": gap, "highest": hi, "lowest": lo, "flagged": gap > max_gap}
    note = None if measures else ("regression has no rate to compare; per-group RMSE and MAE are "
                                  "shown, no gap is flagged")
    return {"group_by": list(group_by), "max_gap": max_gap, "min_group_rows": MIN_GROUP_ROWS,
            "groups": groups, "gaps": gaps, "flagged": any(g["flagged"] for g in gaps.values()),
            "note": note}


def _groups(column: Any) -> Any:
    """A group-by column as group names: values, or quantile bins for a many-valued numeric column."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) and column.nunique() > MAX_GROUPS:
        return pd.qcut(column, QUANTILE_BINS, duplicates="drop").astype(str)
    return column.astype(object).where(column.notna(), "(missing)").astype(str)
