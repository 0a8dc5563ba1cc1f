"""Plan-time rules from what serves: a model id keeps its contract; rejected stays rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework import api
from framework.backends.fake import FakeBackend
from framework.compile.contract import recipe_contract
from framework.errors import PlanError
from framework.state import WorkspaceState


def _launched(fake: FakeBackend) -> api.Planned:
    planned = api.plan(["recipe=churn"], backend=fake)
    api.apply(planned, backend=fake)
    return planned


def _serve(planned: api.Planned, version: str = "1") -> None:
    """What ServeBackend records: the deploy's slots and the contract of each loaded version."""
    recipe = planned.ctx.recipe
    contract = recipe_contract(recipe).model_dump(mode="json")
    with WorkspaceState(planned.ctx.workspace).recipe_transaction(recipe.name) as section:
        section["serving"]["serving.deploy"] = {"slots": {"stable": version, "candidate": None},
                                                "version": version, "at": 1.0,
                                                "contracts": {version: contract}}


def _rolled_back(planned: api.Planned, candidate: str = "1", stable: str = "0") -> None:
    with WorkspaceState(planned.ctx.workspace).transaction() as doc:
        doc["rollouts"][planned.ctx.recipe.app_name] = {
            "status": "rolled_back", "reason": "prediction PSI 8.13 > 0.2",
            "candidate": {"version": candidate}, "stable": {"version": stable}, "updated_at": 2.0,
            "user_config": {"slots": {"stable": {"version": stable}}}}


def test_changing_the_task_of_a_served_model_is_refused_naming_both(project: Path) -> None:
    fake = FakeBackend()
    _serve(_launched(fake))
    with pytest.raises(PlanError) as err:
        api.plan(["recipe=churn", "model=xgboost_regression", "training.gates=[]", "~serving.labels"],
                 backend=fake)
    text = str(err.value)
    assert "recipes/churn.yaml: training.model.objective" in text
    assert "served by version 1 under contract 1 (binary" in text and "task binary -> regression" in text
    assert "registry.contract: 2" in text and "+registry.contract=2" in text
    assert "registry.model_name" in text


def test_changing_the_features_is_refused_and_a_new_major_contract_opts_in(project: Path) -> None:
    fake = FakeBackend()
    _serve(_launched(fake))
    fewer = ("features.service.features=[customer_profile:tenure_months,customer_profile:contract_months,"
             "customer_profile:support_calls,customer_profile:payment_delay_days]")
    with pytest.raises(PlanError, match="features.service.features.*features removed: monthly_charges"):
        api.plan(["recipe=churn", fewer], backend=fake)
    planned = api.plan(["recipe=churn", fewer, "+registry.contract=2"], backend=fake)
    assert planned.plan.has_changes


def test_after_a_rollback_the_plan_shows_the_rejected_version_never_no_changes(project: Path) -> None:
    fake = FakeBackend()
    planned = _launched(fake)
    assert not api.plan(["recipe=churn"], backend=fake).plan.has_changes
    _rolled_back(planned)
    again = api.plan(["recipe=churn"], backend=fake).plan
    changed = [s for s in again.changes]
    assert changed and all(s.kind in ("serving.deploy", "rollout.step") for s in changed)
    assert "version 1 was rejected by its rollout (prediction PSI 8.13 > 0.2)" in changed[0].reason
    assert "stable 0 serves" in changed[0].reason
    from framework.compile.render import render

    shown = render(again)
    assert "No changes." not in shown and "(version 1 was rejected by its rollout" in shown


def test_a_rejected_version_is_not_rolled_out_again_unless_asked(project: Path) -> None:
    fake = FakeBackend()
    planned = _launched(fake)
    _rolled_back(planned)
    fake.calls.clear()
    with pytest.raises(PlanError, match=r"Version 1 of 'churn'.*rejected.*"
                                        r"`loom launch recipe=churn --retry-rejected`"):
        api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    assert fake.calls == []  # nothing half-applied
    api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake,
              options={"ServeBackend": {"retry_rejected": True}})
    assert {a for _, a in fake.calls} >= {"serving.deploy"}
    assert all(a.startswith(("serving.", "rollout.")) for _, a in fake.calls)


def test_a_changed_recipe_trains_a_new_version_so_the_rejection_does_not_apply(project: Path) -> None:
    fake = FakeBackend()
    planned = _launched(fake)
    _rolled_back(planned)
    again = api.plan(["recipe=churn", "training.model.params.max_depth=6"], backend=fake).plan
    assert not any("rejected" in s.reason for s in again.steps)


@pytest.mark.parametrize("head, fragment", [
    ({"running": False}, "the workspace's Ray head is not running"),
    ({"running": True, "started_at": 5.0}, "started at 1970-01-01T00:00:05Z, after the last deploy"),
    ({"running": True, "started_at": 0.5}, None),
])
def test_a_head_that_stopped_or_restarted_after_the_deploy_serves_nothing(
        project: Path, monkeypatch: pytest.MonkeyPatch, head, fragment) -> None:
    from framework.backends import ray_cluster
    from framework.execute import executor

    fake = FakeBackend()
    planned = _launched(fake)
    _serve(planned)  # deployed at t=1.0
    monkeypatch.setattr(ray_cluster, "status", lambda workspace: head)
    # The suite's session Ray may run in this process (integration tests before these), which
    # the rule rightly skips; here the workspace head is what serves.
    monkeypatch.setattr(executor, "_ray_in_process", lambda: False)
    again = api.plan(["recipe=churn"], backend=fake).plan
    changed = {s.address: s.reason for s in again.changes}
    if fragment is None:
        assert not changed, changed
        return
    assert changed and all(a.startswith(("serving.deploy", "rollout.")) for a in changed), changed
    assert all(fragment in reason for reason in changed.values()), changed
    fake.calls.clear()
    api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    assert sorted(a for _, a in fake.calls) == sorted(changed)  # deployed again, nothing retrained
