"""Data checks in `loom plan` and before an apply trains: a failing check blocks with the source,
column, rule, value and fix, and nothing is applied; checks change no step's fingerprint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from framework import api
from framework.backends.data_quality import TITLE
from framework.backends.preflight import CHECKS_TITLE
from framework.errors import RecipeError

SNAPSHOTS = "data.sources.customer_snapshots.checks"


def test_the_example_recipes_pass_their_checks(project: Path) -> None:
    for name in ("churn", "fraud"):
        assert api.plan([f"recipe={name}"]).preflighted


def test_a_failing_check_fails_the_plan_naming_source_column_rule_value_and_fix(project: Path) -> None:
    with pytest.raises(RecipeError) as info:
        api.plan(["recipe=churn", f"{SNAPSHOTS}.range.tenure_months.max=12"])
    err = info.value
    assert err.title == CHECKS_TITLE
    (problem,) = err.problems
    text = problem.render()
    assert text.startswith(f"command line: {SNAPSHOTS}.range.tenure_months.max: Data check failed: source "
                           "'customer_snapshots', column 'tenure_months', rule range (0..12): ")
    assert "rows lie outside it (values span 0.." in text
    assert "hint: Fix those rows in" in text and f"or widen {SNAPSHOTS}.range.tenure_months" in text


def test_a_check_set_in_the_recipe_file_names_the_file(project: Path) -> None:
    recipe = project / "recipes" / "churn.yaml"
    recipe.write_text(recipe.read_text().replace("contract_months: [1, 12, 24]", "contract_months: [1, 12]"))
    with pytest.raises(RecipeError) as info:
        api.plan(["recipe=churn"])
    (problem,) = info.value.problems
    assert problem.file == "recipes/churn.yaml"
    assert "rule allowed_values (one of 1, 12)" in problem.render() and "24 (" in problem.render()


def test_checks_do_not_change_any_fingerprint(project: Path) -> None:
    with_checks = api.plan(["recipe=churn"]).plan
    without = api.plan(["recipe=churn", f"~{SNAPSHOTS}", "~data.sources.churn_labels.checks"]).plan
    assert [(s.address, s.fingerprint) for s in with_checks.steps] == \
           [(s.address, s.fingerprint) for s in without.steps]


def test_apply_checks_the_data_again_before_any_step_and_applies_nothing(project: Path) -> None:
    """Data that goes bad between plan and apply is caught on the data itself, before Feast or Ray."""
    planned = api.plan(["recipe=churn"])
    path = project / "data" / "churn" / "features.parquet"
    frame = pd.read_parquet(path)
    frame.loc[:9, "tenure_months"] = -5
    frame.to_parquet(path, index=False)
    with pytest.raises(RecipeError) as info:
        api.apply(planned)
    assert info.value.title == TITLE
    (problem,) = info.value.problems
    assert problem.path == f"{SNAPSHOTS}.range.tenure_months.min"
    assert "10 of 3,000 rows lie outside it (values span -5.." in problem.render()
    workspace = planned.ctx.workspace
    state = json.loads((workspace / "state.json").read_text()) if (workspace / "state.json").exists() else {}
    assert not state.get("recipes", {}).get("churn", {}).get("steps")
    assert not (workspace / "feast").exists() and not (workspace / "mlflow").exists()


def test_loom_launch_shows_the_failed_check_and_exits_1(project: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "framework", "launch", "recipe=churn",
                          f"{SNAPSHOTS}.freshness.max_age_s=60"], cwd=project, capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "LOOM_API_KEY": "k"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert CHECKS_TITLE in out.stderr
    assert "source 'customer_snapshots', column 'event_timestamp', rule freshness (newest row at most " \
           "1 minute old): the newest row is from " in out.stderr
    assert "Traceback" not in out.stderr and not (project / ".loom" / "state.json").exists()


def test_validate_does_not_read_the_data(project: Path) -> None:
    (project / "data" / "churn" / "features.parquet").write_bytes(b"not parquet")
    assert api.validate(["recipe=churn"]).recipe.data.sources["customer_snapshots"].checks.unique_key
