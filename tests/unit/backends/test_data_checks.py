"""Data checks at the source: every rule passes and fails with a message that names the source, the
column, the rule, the value found and the fix; from parquet statistics, from the data, and on CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from framework.backends.data_quality import problems, remember_rows, run_checks
from framework.spec import Recipe
from framework.spec.data import RULES, SourceChecks

NOW = pd.Timestamp("2026-06-01", tz="UTC")
DAY = 86400.0
#: (format, use_statistics): `loom plan` on parquet, the check before training, and CSV.
MODES = [("parquet", True), ("parquet", False), ("csv", True)]
MODE_IDS = ["parquet-statistics", "parquet-data", "csv"]


def frame(**changes: Any) -> pd.DataFrame:
    """Four good rows: unique (customer_id, event_timestamp), no nulls, newest one day before NOW."""
    base = pd.DataFrame({
        "customer_id": [1, 2, 3, 1],
        "event_timestamp": [NOW - pd.Timedelta(days=d) for d in (3, 2, 1, 1)],
        "spend": [1.5, 20.0, 0.0, 99.0],
        "tier": ["gold", "silver", "gold", "bronze"],
        "visits": [1, 2, 3, 4],
    })
    return base.assign(**changes)


def recipe(checks: dict[str, Any], fmt: str = "parquet") -> Recipe:
    return Recipe.model_validate({
        "schema_version": 1, "name": "shop",
        "data": {"sources": {
            "profiles": {"type": fmt, "path": f"data/profiles.{fmt}", "timestamp_field": "event_timestamp",
                         "checks": checks},
            "labels": {"type": "parquet", "path": "data/labels.parquet", "timestamp_field": "event_timestamp"},
        }},
        "features": {
            "entities": {"customer": {"join_keys": ["customer_id"], "value_type": "int64"}},
            "views": {"profile": {"entities": ["customer"], "source": "profiles", "ttl_s": 0,
                                  "fields": {"spend": "float64", "visits": "int64"}}},
            "service": {"name": "shop_v1", "features": ["profile:spend", "profile:visits"]},
        },
        "training": {"label": {"source": "labels", "column": "bought"},
                     "model": {"type": "xgboost", "objective": "binary:logistic"}},
        "serving": {"auth": {"enabled": False}},
    })


def write(root: Path, data: pd.DataFrame, fmt: str) -> None:
    (root / "data").mkdir(exist_ok=True)
    if fmt == "parquet":
        data.to_parquet(root / "data/profiles.parquet", index=False, row_group_size=2)
    else:
        data.to_csv(root / "data/profiles.csv", index=False)


def check(root: Path, checks: dict[str, Any], data: pd.DataFrame, mode: tuple[str, bool],
          now: pd.Timestamp = NOW) -> tuple[dict[str, Any], list[str]]:
    fmt, stats = mode
    write(root, data, fmt)
    report = run_checks(recipe(checks, fmt), root, root / "ws", use_statistics=stats, now=now.timestamp())
    return report, [p.render() for p in problems(report)]


def only(found: list[str]) -> str:
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_good_data_passes_every_rule(tmp_path: Path, mode) -> None:
    checks = {"not_null": ["customer_id", "spend"], "unique_key": ["customer_id", "event_timestamp"],
              "range": {"spend": {"min": 0, "max": 100}, "visits": {"min": 1}},
              "allowed_values": {"tier": ["gold", "silver", "bronze"]},
              "freshness": {"max_age_s": 2 * DAY}, "row_count": {"max_change": 0.5}}
    report, found = check(tmp_path, checks, frame(), mode)
    assert found == []
    assert report["passed"] == 8 and report["failed"] == 0
    assert report["sources"] == {"profiles": {"rows": 4, "path": f"data/profiles.{mode[0]}"}}
    assert {r["rule"] for r in report["results"]} == set(RULES)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_not_null(tmp_path: Path, mode) -> None:
    text = only(check(tmp_path, {"not_null": ["customer_id", "spend"]},
                      frame(spend=[1.0, None, None, 2.0]), mode)[1])
    assert text.startswith("data.sources.profiles.checks.not_null[1]: Data check failed: source "
                           "'profiles', column 'spend', rule not_null (no nulls): 2 of 4 rows are null.")
    assert "hint: Fill or drop those rows in" in text and "data.sources.profiles.checks.not_null." in text


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_unique_key(tmp_path: Path, mode) -> None:
    same = [NOW - pd.Timedelta(days=1)] * 4
    text = only(check(tmp_path, {"unique_key": ["customer_id", "event_timestamp"]},
                      frame(event_timestamp=same), mode)[1])
    assert "column 'customer_id, event_timestamp', rule unique_key (each (customer_id, " \
           "event_timestamp) once): 1 row repeats a key that an earlier row has, e.g. customer_id=1" in text
    assert "hint: Keep one row per (customer_id, event_timestamp)" in text


def test_a_key_with_a_null_is_never_a_duplicate(tmp_path: Path) -> None:
    found = check(tmp_path, {"unique_key": ["customer_id"]},
                  frame(customer_id=[1.0, None, None, 2.0]), ("parquet", False))[1]
    assert found == []


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_range(tmp_path: Path, mode) -> None:
    report, found = check(tmp_path, {"range": {"spend": {"min": 0, "max": 50}, "visits": {"max": 9}}},
                          frame(spend=[-1.0, 20.0, 60.0, 70.0]), mode)
    text = only(found)
    assert text.startswith("data.sources.profiles.checks.range.spend: Data check failed: source "
                           "'profiles', column 'spend', rule range (0..50): 3 of 4 rows lie outside it "
                           "(values span -1..70).")
    assert "hint: Fix those rows in" in text and "or widen data.sources.profiles.checks.range.spend" in text
    visits = next(r for r in report["results"] if r["column"] == "visits")
    assert visits["passed"] and visits["how"] == ("statistics" if mode == ("parquet", True) else "data")


def test_range_needs_a_numeric_column(tmp_path: Path) -> None:
    text = only(check(tmp_path, {"range": {"tier": {"min": 0}}}, frame(), ("parquet", True))[1])
    assert "column 'tier', rule range (>= 0): the column has type string; a range needs numbers" in text


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_allowed_values(tmp_path: Path, mode) -> None:
    text = only(check(tmp_path, {"allowed_values": {"tier": ["gold", "silver"], "visits": [1, 2, 3, 4]}},
                      frame(), mode)[1])
    assert ("data.sources.profiles.checks.allowed_values.tier: Data check failed: source 'profiles', "
            "column 'tier', rule allowed_values (one of 'gold', 'silver'): 1 row with other values: "
            "'bronze' (1 row).") in text
    assert "or add the values to data.sources.profiles.checks.allowed_values.tier" in text


def test_allowed_values_of_the_wrong_type_say_so(tmp_path: Path) -> None:
    text = only(check(tmp_path, {"allowed_values": {"tier": [1, 2]}}, frame(), ("parquet", True))[1])
    assert "the column has type string, which cannot hold 1, 2" in text
    assert "hint: Write the values as text" in text


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_freshness(tmp_path: Path, mode) -> None:
    checks = {"freshness": {"max_age_s": 2 * DAY}}
    report, found = check(tmp_path, checks, frame(), mode)
    assert found == []
    assert report["results"][0]["found"] == {"newest": "2026-05-31T00:00:00Z", "age_s": DAY}
    late = NOW + pd.Timedelta(days=2)
    text = only(check(tmp_path, checks, frame(), mode, now=late)[1])
    assert ("data.sources.profiles.checks.freshness.max_age_s: Data check failed: source 'profiles', "
            "column 'event_timestamp', rule freshness (newest row at most 2 days old): the newest row "
            "is from 2026-05-31T00:00:00Z, 3 days old.") in text
    assert "hint: Load fresh rows into" in text and "or raise data.sources.profiles.checks.freshness" in text


def test_freshness_reads_naive_timestamps_as_utc(tmp_path: Path) -> None:
    naive = frame()["event_timestamp"].dt.tz_localize(None)
    for stats in (True, False):
        report, found = check(tmp_path, {"freshness": {"max_age_s": 2 * DAY}}, frame(event_timestamp=naive),
                              ("parquet", stats))
        assert found == [] and report["results"][0]["found"]["age_s"] == DAY


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_row_count_against_the_last_training_run(tmp_path: Path, mode) -> None:
    checks = {"row_count": {"max_change": 0.5}}
    report, found = check(tmp_path, checks, frame(), mode)
    assert found == [] and "no earlier training run to compare with" in report["results"][0]["detail"]
    remember_rows(tmp_path / "ws", "shop", {"sources": {"profiles": {"rows": 2}}, "checked_at": "t"}, "run1")
    text = only(check(tmp_path, checks, frame(), mode)[1])
    assert ("data.sources.profiles.checks.row_count.max_change: Data check failed: source 'profiles', "
            "rule row_count (at most 50% change since the last training run): 4 rows against 2 at the "
            "last training run (+100%).") in text
    assert "run once with data.sources.profiles.checks.row_count.max_change=1.05" in text
    remember_rows(tmp_path / "ws", "shop", {"sources": {"profiles": {"rows": 3}}, "checked_at": "t"}, "run2")
    assert check(tmp_path, checks, frame(), mode)[1] == []


def test_an_unknown_column_names_the_source_and_suggests(tmp_path: Path) -> None:
    text = only(check(tmp_path, {"not_null": ["spnd"]}, frame(), ("parquet", True))[1])
    assert "source 'profiles', column 'spnd', rule not_null" in text and "has no column 'spnd'" in text
    assert "hint: Did you mean 'spend'? Columns there: customer_id, event_timestamp, spend" in text


def test_statistics_answer_without_reading_data(tmp_path: Path) -> None:
    """With complete row-group statistics, plan reads only the footer for these rules."""
    checks = {"not_null": ["spend"], "range": {"spend": {"min": 0}}, "freshness": {"max_age_s": 2 * DAY},
              "row_count": {"max_change": 1}}
    report, found = check(tmp_path, checks, frame(), ("parquet", True))
    assert found == []
    assert [r["how"] for r in report["results"]] == ["statistics", "statistics", "statistics", "metadata"]


def test_sources_without_checks_are_not_read(tmp_path: Path) -> None:
    report = run_checks(recipe({}), tmp_path, tmp_path / "ws", use_statistics=True)
    assert report["sources"] == {} and report["results"] == []


# --- the YAML shape validates strictly ----------------------------------------------------------

@pytest.mark.parametrize("checks,fragment", [
    ({"not_null": ["a", "a"]}, "Column 'a' is listed twice"),
    ({"range": {"a": {}}}, "A range needs 'min', 'max' or both"),
    ({"range": {"a": {"min": 3, "max": 1}}}, "min (3) is larger than max (1)"),
    ({"allowed_values": {"a": []}}, "at least 1 item"),
    ({"freshness": {"max_age_s": 0}}, "greater than 0"),
    ({"row_count": {"max_change": -1}}, "greater than 0"),
    ({"not_nul": ["a"]}, "Extra inputs are not permitted"),
], ids=["repeated", "empty-range", "min-over-max", "no-values", "zero-age", "negative-change", "typo"])
def test_checks_validate_strictly(checks, fragment) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        SourceChecks.model_validate(checks)


def test_validate_judges_checks_against_declared_column_types() -> None:
    from framework.spec import run_checks as spec_checks

    r = recipe({"range": {"event_timestamp": {"min": 0}, "visits": {"min": 0}},
                "allowed_values": {"visits": [1, "2", True], "customer_id": [1, 2]}})
    found = {p.path: p.render() for p in spec_checks(r)}
    assert set(found) == {"data.sources.profiles.checks.range.event_timestamp",
                          "data.sources.profiles.checks.allowed_values.visits"}
    assert "A range needs a numeric column; 'event_timestamp' is timestamp" in found[
        "data.sources.profiles.checks.range.event_timestamp"]
    assert "Column 'visits' is int64; '2', True cannot occur in it" in found[
        "data.sources.profiles.checks.allowed_values.visits"]
