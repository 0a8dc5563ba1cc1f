"""Many recipes in one project: each plans only its own steps; shared Feast objects have owners."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework import api
from framework.backends.fake import FakeBackend
from framework.errors import PlanError
from framework.execute.state import State


def _sibling(project: Path, name: str, **edits: str) -> None:
    """recipes/<name>.yaml: churn's recipe in churn's Feast project, under another name."""
    text = (project / "recipes" / "churn.yaml").read_text()
    text = text.replace("name: churn\n", f"name: {name}\n").replace(
        "registry:\n  model_name: churn", f"registry:\n  model_name: {name}")
    text = text.replace("features:\n  entities:", "features:\n  project: churn\n  entities:")
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    (project / "recipes" / f"{name}.yaml").write_text(text)


def test_planning_another_recipe_shows_only_its_own_steps(project: Path) -> None:
    fake = FakeBackend()
    api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    fraud = api.plan(["recipe=fraud"], backend=fake).plan
    assert all(s.action == "create" for s in fraud.steps)
    assert not [s for s in fraud.steps if s.action == "delete"]
    api.apply(api.plan(["recipe=fraud"], backend=fake), backend=fake)
    assert not api.plan(["recipe=churn"], backend=fake).plan.has_changes
    assert not api.plan(["recipe=fraud"], backend=fake).plan.has_changes


def test_state_records_where_each_recipe_came_from(project: Path) -> None:
    fake = FakeBackend()
    api.apply(api.plan(["recipe=fraud"], backend=fake), backend=fake)
    section = State(project / ".loom", "churn").others()["fraud"]
    assert section["recipe_file"] == "recipes/fraud.yaml"
    assert section["model_id"] == "fraud" and section["feast_project"] == "fraud"


def test_a_shared_feast_object_defined_differently_is_a_plan_error(project: Path) -> None:
    fake = FakeBackend()
    api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    _sibling(project, "retention", **{"value_type: string": "value_type: int64"})
    with pytest.raises(PlanError) as err:
        api.plan(["recipe=retention"], backend=fake)
    text = str(err.value)
    assert "feast.entity.customer" in text and "'churn'" in text
    assert "recipes/retention.yaml" in text and "recipes/churn.yaml" in text
    assert "value_type: 'int64' here, 'string' there" in text


def test_a_shared_object_defined_alike_is_planned_and_kept_while_another_uses_it(
        project: Path) -> None:
    fake = FakeBackend()
    api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    _sibling(project, "retention")
    planned = api.plan(["recipe=retention"], backend=fake)
    api.apply(planned, backend=fake)
    # An entity retention no longer defines: deleted while it alone holds it, kept once churn does.
    state = State(project / ".loom", "retention")
    state.record("feast.entity.old_only_here", "feast.entity", "sha256:x", {})
    fake.calls.clear()
    replanned = api.plan(["recipe=retention"], backend=fake).plan
    assert [s.address for s in replanned.changes] == ["feast.entity.old_only_here"]
    State(project / ".loom", "churn").record("feast.entity.old_only_here", "feast.entity",
                                             "sha256:x", {})
    shared = api.plan(["recipe=retention"], backend=fake)
    (delete,) = shared.plan.changes
    assert "kept in Feast: recipe churn still uses it" in delete.reason
    api.apply(shared, backend=fake)
    assert ("delete", "feast.entity.old_only_here") not in fake.calls
    assert State(project / ".loom", "retention").fingerprint("feast.entity.old_only_here") is None
    assert State(project / ".loom", "churn").fingerprint("feast.entity.old_only_here") == "sha256:x"


def test_destroy_removes_one_recipe_and_leaves_the_others_plans_unchanged(project: Path) -> None:
    fake = FakeBackend()
    for name in ("churn", "fraud"):
        api.apply(api.plan([f"recipe={name}"], backend=fake), backend=fake)
    planned = api.plan_destroy(["recipe=fraud"])
    assert planned.plan.steps and {s.action for s in planned.plan.steps} == {"delete"}
    assert planned.plan.steps[0].address == "monitoring.rules"  # reverse apply order
    fake.calls.clear()
    api.destroy(planned, backend=fake)
    deleted = {a for verb, a in fake.calls if verb == "delete"}
    assert "serving.deploy" in deleted and "feast.entity.account" in deleted
    # registry history stays: runs and versions are forgotten by the state, not deleted
    assert not deleted & {"training.train", "training.gates", "registry.register"}
    assert State(project / ".loom", "fraud").entries == {}
    assert "fraud" not in State(project / ".loom", "churn").others()
    assert not api.plan(["recipe=churn"], backend=fake).plan.has_changes
    assert {s.action for s in api.plan(["recipe=fraud"], backend=fake).plan.steps} == {"create"}


def test_destroy_with_purge_registry_deletes_the_history_too(project: Path) -> None:
    fake = FakeBackend()
    api.apply(api.plan(["recipe=fraud"], backend=fake), backend=fake)
    fake.calls.clear()
    api.destroy(api.plan_destroy(["recipe=fraud"], purge_registry=True), purge_registry=True,
                backend=fake)
    assert {"training.train", "registry.register"} <= {a for verb, a in fake.calls if verb == "delete"}


def test_a_shared_entity_survives_destroying_one_of_its_recipes(project: Path) -> None:
    fake = FakeBackend()
    api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    _sibling(project, "retention")
    api.apply(api.plan(["recipe=retention"], backend=fake), backend=fake)
    planned = api.plan_destroy(["recipe=retention"])
    reasons = {s.address: s.reason for s in planned.plan.steps}
    assert "kept in Feast: recipe churn" in reasons["feast.entity.customer"]
    fake.calls.clear()
    api.destroy(planned, backend=fake)
    deleted = {a for verb, a in fake.calls if verb == "delete"}
    assert not {"feast.entity.customer", "feast.view.customer_profile"} & deleted
    assert "serving.deploy" in deleted  # retention's own app goes
    assert not api.plan(["recipe=churn"], backend=fake).plan.has_changes


def test_status_lists_every_applied_recipe(project: Path) -> None:
    from framework import ops

    fake = FakeBackend()
    for name in ("churn", "fraud"):
        api.apply(api.plan([f"recipe={name}"], backend=fake), backend=fake)
    rows = ops.status([])["recipes"]
    assert [(r["recipe"], r["model_id"], r["recipe_file"]) for r in rows] == [
        ("churn", "churn", "recipes/churn.yaml"), ("fraud", "fraud", "recipes/fraud.yaml")]
    table = ops.status_table(rows)
    assert table.splitlines()[0].split()[:3] == ["RECIPE", "MODEL", "STABLE"]
    one = ops.status(["recipe=fraud"])["recipe"]
    assert one["applied"] and any(s["address"] == "serving.deploy" for s in one["applied_steps"])
