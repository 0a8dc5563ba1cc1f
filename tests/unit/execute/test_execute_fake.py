"""Planning and applying through the executor with the fake backend: idempotence, resume, staleness."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework import api
from framework.backends.fake import FakeBackend
from framework.errors import BackendError, PlanError, StateError
from framework.execute.state import State


def test_apply_then_plan_shows_no_changes(project: Path) -> None:
    fake = FakeBackend()
    planned = api.plan(["recipe=churn"], backend=fake)
    assert all(s.action == "create" for s in planned.plan.steps)
    api.apply(planned, backend=fake)
    again = api.plan(["recipe=churn"], backend=fake)
    assert not again.plan.has_changes
    assert again.plan == api.plan(["recipe=churn"], backend=fake, refresh=True).plan


def test_changed_data_file_replans_downstream(project: Path) -> None:
    fake = FakeBackend()
    api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    labels = project / "data" / "churn" / "labels.parquet"
    labels.write_bytes(labels.read_bytes() + b"\0")
    changed = {s.address for s in api.plan(["recipe=churn"], backend=fake).plan.changes}
    assert "training.train" in changed and "feast.materialize" not in changed


def test_failed_step_keeps_finished_steps_and_resumes(project: Path) -> None:
    fake = FakeBackend(fail_on={"training.train"})
    with pytest.raises(BackendError, match="training.train: apply failed"):
        api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    state = State(project / ".loom", "churn")
    assert state.fingerprint("training.dataset") is not None
    assert state.fingerprint("training.train") is None
    fake.fail_on.clear()
    resumed = api.plan(["recipe=churn"], backend=fake).plan
    assert resumed.changes[0].address == "training.train"
    assert all(s.action == "no-op" for s in resumed.steps[:5])


def test_no_op_steps_hand_their_outputs_downstream(project: Path) -> None:
    fake = FakeBackend()
    api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    planned = api.plan(["recipe=churn", "serving.replicas=2"], backend=fake)
    api.apply(planned, backend=fake)
    assert planned.ctx.outputs["registry.register"]["version"] == "1"


def test_removed_view_is_deleted(project: Path) -> None:
    fake = FakeBackend()
    api.apply(api.plan(["recipe=churn"], backend=fake), backend=fake)
    State(project / ".loom", "churn").record("feast.view.retired", "feast.view", "sha256:x", {})
    planned = api.plan(["recipe=churn"], backend=fake)
    assert [s.address for s in planned.plan.changes] == ["feast.view.retired"]
    api.apply(planned, backend=fake)
    assert ("delete", "feast.view.retired") in fake.calls
    assert State(project / ".loom", "churn").fingerprint("feast.view.retired") is None


def test_stale_saved_plan_is_refused(project: Path) -> None:
    fake = FakeBackend()
    saved = project / "plan.json"
    saved.write_text(api.plan(["recipe=churn"], backend=fake).plan.to_json())
    api.apply(api.plan(["recipe=churn", "serving.replicas=3"], backend=fake), backend=fake)
    with pytest.raises(PlanError, match="stale"):
        api.apply(api.load_plan(saved), backend=fake)


def test_saved_plan_refused_after_data_change(project: Path) -> None:
    saved = project / "plan.json"
    saved.write_text(api.plan(["recipe=churn"], backend=FakeBackend()).plan.to_json())
    labels = project / "data" / "churn" / "labels.parquet"
    labels.write_bytes(labels.read_bytes() + b"\0")
    with pytest.raises(PlanError, match="inputs changed"):
        api.apply(api.load_plan(saved), backend=FakeBackend())


def test_saved_plan_applies_exactly(project: Path) -> None:
    fake = FakeBackend()
    saved = project / "plan.json"
    saved.write_text(api.plan(["recipe=churn"], backend=fake).plan.to_json())
    api.apply(api.load_plan(saved), backend=fake)
    assert len(fake.applied) == 14


def test_workspace_lock(project: Path) -> None:
    state = State(project / ".loom", "churn")
    with state.lock():
        with pytest.raises(StateError, match="Another Loom command"):
            with State(project / ".loom", "churn").lock():
                pass


def test_damaged_state_file(project: Path) -> None:
    (project / ".loom").mkdir()
    (project / ".loom" / "state.json").write_text("{")
    with pytest.raises(StateError, match="damaged"):
        api.plan(["recipe=churn"], backend=FakeBackend())


def test_missing_data_file_names_the_key(project: Path) -> None:
    (project / "data" / "churn" / "labels.parquet").unlink()
    with pytest.raises(Exception, match="data.sources.churn_labels.path"):
        api.plan(["recipe=churn"], backend=FakeBackend())


def test_reapplying_a_saved_plan_runs_nothing_twice(project: Path) -> None:
    fake = FakeBackend()
    saved = project / "plan.json"
    saved.write_text(api.plan(["recipe=churn"], backend=fake).plan.to_json())
    api.apply(api.load_plan(saved), backend=fake)
    calls = len(fake.calls)
    api.apply(api.load_plan(saved), backend=fake)
    assert len(fake.calls) == calls


def test_env_driven_values_never_reach_the_plan(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_T_URI", "postgresql://bob:hunter2@db/mlflow")
    planned = api.plan(["recipe=churn", "+registry.tracking_uri=${oc.env:LOOM_T_URI}"], backend=FakeBackend())
    assert planned.ctx.recipe.registry.tracking_uri.endswith("@db/mlflow")  # resolved for the engines
    text = planned.plan.to_json()
    assert "hunter2" not in text and "${oc.env:LOOM_T_URI}" in text
    saved = project / "plan.json"
    saved.write_text(text)
    api.apply(api.load_plan(saved), backend=FakeBackend())  # resolved again when applied


def test_deleted_rollout_steps_route_to_their_strategy_backend() -> None:
    from framework.compile.plan import Step
    from framework.execute.backends import Backends

    for address, cls in (("rollout.canary.step4", "RolloutBackend"), ("rollout.direct", "ServeBackend")):
        step = Step(address=address, kind="rollout.step", fingerprint="", action="delete")
        assert type(Backends().for_step(step)).__name__ == cls
