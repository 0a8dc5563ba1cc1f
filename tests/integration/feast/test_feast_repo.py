"""Apply/observe/plan round trip on the churn recipe, and the `feast` CLI on the generated repo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from framework.backends.feast import FeastBackend, fingerprint_sources
from framework.backends.feast.repo import repo_dir

from feast_helpers import compose_recipe, feast_steps

pytestmark = pytest.mark.integration

FEAST_CLI = Path(sys.executable).with_name("feast")


def observed(backend: FeastBackend, recipe, ctx) -> dict[str, tuple[str | None, str]]:
    return {s.address: (backend.observe(s, ctx), s.fingerprint) for s in feast_steps(recipe, ctx.project_dir)}


def test_apply_then_replan_shows_no_changes_and_a_type_change_shows_update(project, feast_ctx):
    recipe, ctx = feast_ctx(compose_recipe(project, "churn"))
    backend = FeastBackend()
    assert {a: o for a, (o, _) in observed(backend, recipe, ctx).items()} == dict.fromkeys(
        ["feast.entity.customer", "feast.view.customer_profile", "feast.service.churn_model_v1",
         "feast.materialize", "training.dataset"])
    outputs = {s.address: backend.apply(s, ctx) for s in feast_steps(recipe, project)}

    assert outputs["feast.materialize"]["rows"] == 1000  # one row per customer
    assert outputs["training.dataset"]["rows"] == 1000
    assert all(o == fp for o, fp in observed(FeastBackend(), recipe, ctx).values())  # fresh backend

    changed, ctx2 = feast_ctx(compose_recipe(
        project, "churn", ["features.views.customer_profile.fields.support_calls=float64"]))
    after = observed(backend, changed, ctx2)
    assert after["feast.entity.customer"][0] == after["feast.entity.customer"][1]  # unchanged
    view_seen, view_wanted = after["feast.view.customer_profile"]
    assert view_seen is not None and view_seen != view_wanted  # '~' update, not '+' create


def test_a_changed_source_file_changes_only_the_data_steps(project, feast_ctx):
    recipe, ctx = feast_ctx(compose_recipe(project, "churn"))
    before = {s.address: s.fingerprint for s in feast_steps(recipe, project)}
    path = project / "data/churn/labels.parquet"
    frame = pd.read_parquet(path)
    assert fingerprint_sources(recipe, project) == fingerprint_sources(recipe, project)
    frame.iloc[:10].to_parquet(path, index=False)
    after = {s.address: s.fingerprint for s in feast_steps(recipe, project)}
    assert [a for a in before if before[a] != after[a]] == ["training.dataset"]


def test_feast_cli_lists_the_views_and_plans_no_changes(project, feast_ctx):
    recipe, ctx = feast_ctx(compose_recipe(project, "churn"))
    backend = FeastBackend()
    for step in feast_steps(recipe, project):
        backend.apply(step, ctx)
    repo = repo_dir(ctx.workspace, recipe.project)
    script = f"'{FEAST_CLI}' feature-views list && echo '=== plan' && '{FEAST_CLI}' plan"
    run = subprocess.run(["sh", "-c", script], cwd=repo, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    listing, plan = run.stdout.split("=== plan")
    assert "customer_profile" in listing and "customer" in listing
    assert "No changes to registry" in plan and "No changes to infrastructure" in plan
    assert "Deleted" not in plan and "deleted" not in plan.lower()
