"""The six data check rules: each measures one thing in a source and says what it found and the fix."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from framework.errors import Problem

if TYPE_CHECKING:
    from framework.backends.data_stats import SourceFacts
    from framework.spec.data import Range


@dataclass(frozen=True)
class Outcome:
    """One rule on one column of one source: passed or not, what was found, and the fix."""

    source: str
    rule: str
    column: str | None
    key: str
    passed: bool
    expected: str
    found: Any
    detail: str
    how: str
    hint: str = ""

    def problem(self) -> Problem:
        col = f", column '{self.column}'" if self.column else ""
        return Problem(path=self.key, hint=self.hint or None,
                       message=f"Data check failed: source '{self.source}'{col}, rule {self.rule} "
                               f"({self.expected}): {self.detail}.")


def not_null(source: str, key: str, col: str, facts: "SourceFacts") -> Outcome:
    """``col`` holds no nulls (parquet statistics' null counts are exact)."""
    expected = "no nulls"
    if col not in facts.columns:
        return _no_column(source, "not_null", key, col, expected, facts)
    nulls, rows = facts.null_count(col), facts.num_rows().value
    if nulls.value == 0:
        return _pass(source, "not_null", col, key, expected, 0, "no nulls", nulls.how)
    return _fail(source, "not_null", col, key, expected, nulls.value,
                 f"{nulls.value:,} of {rows:,} rows are null", nulls.how,
                 f"Fill or drop those rows in {facts.shown}, or remove '{col}' from {_list_key(key)}.")


def unique_key(source: str, key: str, cols: list[str], facts: "SourceFacts") -> Outcome:
    """No two rows share the values of ``cols`` (reads those columns)."""
    names = ", ".join(cols)
    expected = f"each ({names}) once"
    missing = [c for c in cols if c not in facts.columns]
    if missing:
        return _no_column(source, "unique_key", key, missing[0], expected, facts)
    repeated, example = facts.duplicates(cols)
    column = names
    if not repeated:
        return _pass(source, "unique_key", column, key, expected, 0, "every key is unique", "data")
    shown = ", ".join(f"{k}={v!r}" for k, v in (example or {}).items())
    return _fail(source, "unique_key", column, key, expected, repeated,
                 f"{_rows(repeated)} {'repeats' if repeated == 1 else 'repeat'} a key that an earlier "
                 f"row has, e.g. {shown}", "data",
                 f"Keep one row per ({names}) in {facts.shown}, or correct {key}.")


def in_range(source: str, key: str, col: str, bounds: "Range", facts: "SourceFacts") -> Outcome:
    """Every non-null value of numeric ``col`` lies within ``bounds`` (statistics' min/max decide)."""
    import pyarrow.types as pat

    expected = bounds.text()
    if col not in facts.columns:
        return _no_column(source, "range", key, col, expected, facts)
    kind = facts.arrow_type(col)
    if not (pat.is_integer(kind) or pat.is_floating(kind)):
        return _fail(source, "range", col, key, expected, str(kind),
                     f"the column has type {kind}; a range needs numbers", "schema",
                     f"Check a numeric column, or use allowed_values for {kind} values.")
    span = facts.min_max(col)
    if span.value is None:
        return _pass(source, "range", col, key, expected, None, "no values (all null)", span.how)
    low, high = span.value
    shown = f"values span {_num(low)}..{_num(high)}"
    if (bounds.min is None or low >= bounds.min) and (bounds.max is None or high <= bounds.max):
        return _pass(source, "range", col, key, expected, [low, high], shown, span.how)
    outside = facts.outside(col, bounds.min, bounds.max)
    below = bounds.min is not None and low < bounds.min
    above = bounds.max is not None and high > bounds.max
    bound = key if below and above else f"{key}.{'min' if below else 'max'}"  # the key to fix
    return _fail(source, "range", col, bound, expected, [low, high],
                 f"{outside:,} of {facts.num_rows().value:,} rows lie outside it ({shown})", "data",
                 f"Fix those rows in {facts.shown}, or widen {key}.")


def allowed(source: str, key: str, col: str, values: list[Any], facts: "SourceFacts") -> Outcome:
    """Every non-null value of ``col`` is one of ``values`` (reads the column)."""
    expected = "one of " + ", ".join(map(repr, values))
    if col not in facts.columns:
        return _no_column(source, "allowed_values", key, col, expected, facts)
    kind = facts.arrow_type(col)
    unfit = [v for v in values if not _fits(v, kind)]
    if unfit:
        return _fail(source, "allowed_values", col, key, expected, str(kind),
                     f"the column has type {kind}, which cannot hold {', '.join(map(repr, unfit))}",
                     "schema", f"Write the values as {_kind_text(kind)} in {key}.")
    allowed_set = set(values)
    other = sorted(((v, n) for v, n in facts.value_counts(col) if v not in allowed_set),
                   key=lambda item: -item[1])
    if not other:
        return _pass(source, "allowed_values", col, key, expected, [], "only allowed values", "data")
    shown = ", ".join(f"{v!r} ({_rows(n)})" for v, n in other[:5]) + (", ..." if len(other) > 5 else "")
    return _fail(source, "allowed_values", col, key, expected, [v for v, _ in other[:20]],
                 f"{_rows(sum(n for _, n in other))} with other values: {shown}", "data",
                 f"Fix those rows in {facts.shown}, or add the values to {key}.")


def fresh(source: str, key: str, col: str, max_age_s: float, facts: "SourceFacts",
          now: float) -> Outcome:
    """The newest ``timestamp_field`` value is at most ``max_age_s`` old at ``now``."""
    import pyarrow.types as pat

    expected = f"newest row at most {_age(max_age_s)} old"
    if col not in facts.columns:
        return _no_column(source, "freshness", key, col, expected, facts)
    kind = facts.arrow_type(col)
    if not pat.is_timestamp(kind):
        return _fail(source, "freshness", col, key, expected, str(kind),
                     f"timestamp_field has type {kind}, not a timestamp", "schema",
                     "Store event times as timestamps.")
    span = facts.min_max(col)
    if span.value is None:
        return _fail(source, "freshness", col, key, expected, None, "the column has no timestamps",
                     span.how, f"Fill {col} in {facts.shown}.")
    newest = span.value[1]
    age = now - newest
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest))
    found = {"newest": when, "age_s": round(age, 1)}
    shown = f"the newest row is from {when}, {_age(max(age, 0.0))} old"
    if age <= max_age_s:
        return _pass(source, "freshness", col, key, expected, found, shown, span.how)
    return _fail(source, "freshness", col, key, expected, found, shown, span.how,
                 f"Load fresh rows into {facts.shown}, or raise {key} (seconds).")


def row_count(source: str, key: str, max_change: float, facts: "SourceFacts",
              last: int | None) -> Outcome:
    """The row count changed by at most ``max_change`` (a fraction) since the last training run."""
    rows = facts.num_rows()
    expected = f"at most {max_change:.0%} change since the last training run"
    found = {"rows": rows.value, "last_rows": last}
    if last is None:
        return _pass(source, "row_count", None, key, expected, found,
                     f"{rows.value:,} rows; no earlier training run to compare with", rows.how)
    change = abs(rows.value - last) / last if last else (0.0 if rows.value == 0 else float("inf"))
    found["change"] = round(change, 4) if change != float("inf") else None
    shown = f"{rows.value:,} rows against {last:,} at the last training run ({_signed(rows.value, last)})"
    if change <= max_change:
        return _pass(source, "row_count", None, key, expected, found, shown, rows.how)
    return _fail(source, "row_count", None, key, expected, found, shown, rows.how,
                 f"If the change is expected, run once with {key}={max(1.0, round(change + 0.05, 2))} "
                 "(or raise it in the recipe): the run that trains records the new count; otherwise fix "
                 f"{facts.shown}.")


def _no_column(source: str, rule: str, key: str, col: str, expected: str, facts: "SourceFacts") -> Outcome:
    import difflib  # error path only

    close = difflib.get_close_matches(col, facts.columns, n=1, cutoff=0.6)
    mean = f"Did you mean '{close[0]}'? " if close else ""
    return _fail(source, rule, col, key, expected, None, f"{facts.shown} has no column '{col}'", "schema",
                 f"{mean}Columns there: {', '.join(facts.columns)}.")


def _pass(source: str, rule: str, col: str | None, key: str, expected: str, found: Any, detail: str,
          how: str) -> Outcome:
    return Outcome(source, rule, col, key, True, expected, found, detail, how)


def _fail(source: str, rule: str, col: str | None, key: str, expected: str, found: Any, detail: str,
          how: str, hint: str) -> Outcome:
    return Outcome(source, rule, col, key, False, expected, found, detail, how, hint)


def _fits(value: Any, kind: Any) -> bool:
    """Whether an allowed value can occur in a column of Arrow type ``kind``."""
    import pyarrow.types as pat

    if pat.is_boolean(kind):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if pat.is_integer(kind):
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if pat.is_floating(kind):
        return isinstance(value, (int, float))
    if pat.is_string(kind) or pat.is_large_string(kind):
        return isinstance(value, str)
    return False


def _kind_text(kind: Any) -> str:
    import pyarrow.types as pat

    if pat.is_boolean(kind):
        return "true/false"
    if pat.is_integer(kind) or pat.is_floating(kind):
        return "numbers"
    return "text" if pat.is_string(kind) or pat.is_large_string(kind) else f"{kind} values"


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _list_key(key: str) -> str:
    return key.rsplit("[", 1)[0]


def _num(x: float) -> str:
    return f"{x:g}"


def _signed(rows: int, last: int) -> str:
    if not last:
        return "from none"
    return f"{(rows - last) / last:+.0%}"


def _age(seconds: float) -> str:
    """``45 days``, ``3.5 hours``, ``90 s``: the unit people think in."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            value = f"{seconds / size:.3g}"
            return f"{value} {unit}" + ("" if value == "1" else "s")
    return f"{seconds:.3g} s"
