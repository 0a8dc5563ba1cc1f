"""Compiling recipes into plans: order, fingerprints that move only with their inputs, JSON, text."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.compile.compiler import compile_plan, compile_steps
from framework.compile.plan import Plan
from framework.compile.render import render
from framework.errors import PlanError
from framework.execute.diff import diff
from framework.loading import load_recipe

DATA = {"customer_snapshots": "sha256:aa", "churn_labels": "sha256:bb"}


@pytest.fixture
def churn(project: Path):
    return load_recipe(["recipe=churn"])


def _fps(recipe, data=DATA):
    return {s.address: s.fingerprint for s in compile_steps(recipe, data)}


def test_steps_in_apply_order(churn) -> None:
    addresses = [s.address for s in compile_steps(churn.recipe, DATA)]
    assert addresses == [
        "feast.entity.customer", "feast.view.customer_profile", "feast.service.churn_model_v1",
        "feast.materialize", "training.dataset", "training.train", "training.gates",
        "registry.register", "serving.deploy", "rollout.canary.step1", "rollout.canary.step2",
        "rollout.canary.step3", "rollout.canary.step4", "monitoring.rules",
    ]
    steps = compile_steps(churn.recipe, DATA)
    assert [s.attrs["weight"] for s in steps if s.kind == "rollout.step"] == [5, 25, 50, 100]


def test_compile_is_deterministic(churn) -> None:
    assert _fps(churn.recipe) == _fps(churn.recipe)


def test_changed_label_file_reruns_dataset_and_downstream_only(churn) -> None:
    before, after = _fps(churn.recipe), _fps(churn.recipe, {**DATA, "churn_labels": "sha256:cc"})
    changed = {a for a in before if before[a] != after[a]}
    assert "feast.view.customer_profile" not in changed and "feast.materialize" not in changed
    assert {"training.dataset", "training.train", "registry.register", "serving.deploy"} <= changed


def test_changed_feature_file_rematerializes(churn) -> None:
    before = _fps(churn.recipe)
    after = _fps(churn.recipe, {**DATA, "customer_snapshots": "sha256:dd"})
    assert before["feast.materialize"] != after["feast.materialize"]
    assert before["feast.view.customer_profile"] == after["feast.view.customer_profile"]


def test_serving_change_does_not_retrain(project: Path) -> None:
    a = _fps(load_recipe(["recipe=churn"]).recipe)
    b = _fps(load_recipe(["recipe=churn", "serving.replicas=2"]).recipe)
    assert a["training.train"] == b["training.train"] and a["serving.deploy"] != b["serving.deploy"]


def test_tuning_adds_a_tune_step(project: Path) -> None:
    r = load_recipe(["recipe=churn", "training.model.params.max_depth=choice(3,6)"]).recipe
    steps = {s.address: s for s in compile_steps(r, DATA)}
    assert steps["training.train"].depends_on == ("training.dataset", "training.tune")


def test_blue_green_phases(project: Path) -> None:
    r = load_recipe(["recipe=fraud"]).recipe
    phases = [s.attrs["phase"] for s in compile_steps(r, {}) if s.kind == "rollout.step"]
    assert phases == ["shadow", "switch", "retire_blue"]


def test_plan_round_trips_through_json(churn) -> None:
    plan = compile_plan(churn.recipe, churn.data, DATA, "/p")
    plan = diff(plan, {"feast.entity.customer": plan.steps[0].fingerprint}, {"feast.view.old": "feast.view"})
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.to_json() == plan.to_json()


def test_damaged_plan_file_is_a_clear_error() -> None:
    with pytest.raises(PlanError, match="invalid JSON"):
        Plan.from_json("{nope", source="plan.json")
    with pytest.raises(PlanError, match="not a Loom plan"):
        Plan.from_json('{"format": 99}', source="plan.json")


def test_diff_actions_and_rendering(churn) -> None:
    plan = compile_plan(churn.recipe, churn.data, DATA, "/p")
    first = plan.steps[0]
    observed = {first.address: first.fingerprint, plan.steps[1].address: "sha256:old"}
    diffed = diff(plan, observed, {"feast.view.retired": "feast.view"})
    actions = {s.address: s.action for s in diffed.steps}
    assert actions["feast.entity.customer"] == "no-op"
    assert actions["feast.view.customer_profile"] == "update"
    assert actions["training.train"] == "create"
    assert actions["feast.view.retired"] == "delete"
    text = render(diffed)
    assert "  ~ feast.view.customer_profile" in text and "  - feast.view.retired" in text
    assert "feast.entity.customer" not in text  # unchanged steps are hidden unless verbose
    assert text.endswith("Plan: 12 to create, 1 to update, 1 to delete, 1 unchanged.")


def test_no_changes_text(churn) -> None:
    plan = compile_plan(churn.recipe, churn.data, DATA, "/p")
    diffed = diff(plan, {s.address: s.fingerprint for s in plan.steps}, {})
    assert render(diffed).endswith("No changes. The running system matches the recipe.")


def test_monitoring_off_turns_the_replicas_metrics_off_and_redeploys(project: Path) -> None:
    from framework.backends.ray_serve import config as cfg
    from framework.serving.metrics import NullMetrics, make_metrics

    on, off = load_recipe(["recipe=churn"]).recipe, load_recipe(["recipe=churn", "monitoring=none"]).recipe
    assert _fps(on)["serving.deploy"] != _fps(off)["serving.deploy"]  # new builder args
    assert "monitoring.rules" not in _fps(off)
    features = {"type": "none"}
    assert cfg.app_args(on, project, features=features)["metrics"] is True
    args = cfg.app_args(off, project, features=features)
    assert args["metrics"] is False and isinstance(make_metrics("churn", args["metrics"]), NullMetrics)


def test_monitoring_keys_nothing_reads_are_refused(project: Path) -> None:
    from framework.errors import RecipeError

    # (monitoring.prometheus_url was such a key; rollouts read their analyses from it now.)
    with pytest.raises(RecipeError) as err:
        load_recipe(["recipe=churn", "+monitoring.drift.psi_alert=0.3"])
    assert "monitoring.drift" in err.value.render(), err.value.render()


def test_on_drift_reaches_the_rollout_steps_and_alert_changes_nothing(churn, project: Path) -> None:
    from framework.rollout.phases import spec_from_steps

    base = _fps(churn.recipe)
    alert = load_recipe(["recipe=churn", "+monitoring.on_drift=alert"]).recipe
    assert _fps(alert) == base
    gated = load_recipe(["recipe=churn", "+monitoring.on_drift=rollback",
                         "monitoring.drift.psi_threshold=0.3"]).recipe
    moved = {a for a, fp in _fps(gated).items() if base[a] != fp}
    assert moved == {"rollout.canary.step1", "rollout.canary.step2", "rollout.canary.step3",
                     "rollout.canary.step4", "monitoring.rules"}
    spec = spec_from_steps(compile_steps(gated, DATA))
    assert spec.drift == {"action": "rollback", "psi_threshold": 0.3}
    assert spec_from_steps(compile_steps(churn.recipe, DATA)).drift is None


@pytest.mark.parametrize("overrides,message", [
    (["rollout=direct"], "A direct rollout has no analysis windows"),
    (["monitoring=none"], "monitoring.enabled is false"),
], ids=["direct", "monitoring-off"])
def test_on_drift_where_it_cannot_act_is_refused_at_validate(project: Path, overrides, message) -> None:
    from framework.errors import RecipeError

    with pytest.raises(RecipeError) as err:
        load_recipe(["recipe=churn", "+monitoring.on_drift=rollback", *overrides])
    assert "monitoring.on_drift" in str(err.value) and message in str(err.value)


def test_on_drift_gates_the_rollout_with_drift_bins_off(churn, project: Path) -> None:
    from framework.rollout.phases import spec_from_steps

    recipe = load_recipe(["recipe=churn", "+monitoring.on_drift=pause_rollout",
                          "monitoring.drift.enabled=false"]).recipe
    assert spec_from_steps(compile_steps(recipe, DATA)).drift["action"] == "pause_rollout"


PROM = "+monitoring.prometheus_url=http://127.0.0.1:9090"


@pytest.mark.parametrize("overrides,key,message", [
    (["monitoring=none", PROM], "monitoring.prometheus_url", "monitoring.enabled is false"),
    ([PROM, "monitoring.scrape_interval_s=40"], "rollout.interval_s",
     "at least two scrapes (2 x monitoring.scrape_interval_s = 80 s)"),
    ([PROM, "+monitoring.on_drift=rollback", "monitoring.drift.enabled=false"],
     "monitoring.on_drift", "ray_loom_score_bin_total"),
    (["+monitoring.prometheus_url=http://user:pw@prom:9090"], "monitoring.prometheus_url",
     "may not carry credentials"),
    (["+monitoring.prometheus_url=prom:9090"], "monitoring.prometheus_url",
     "starts with http:// or https://"),
], ids=["monitoring-off", "window-under-two-scrapes", "drift-gate-without-bins", "credentials",
        "no-scheme"])
def test_prometheus_analysis_where_it_cannot_work_is_refused_at_validate(
        project: Path, overrides, key, message) -> None:
    from framework.errors import RecipeError

    with pytest.raises(RecipeError) as err:
        load_recipe(["recipe=churn", *overrides])
    assert key in str(err.value) and message in str(err.value), str(err.value)
    assert "user:pw" not in str(err.value)


def test_prometheus_url_reads_the_analysis_from_prometheus_and_moves_no_step(churn,
                                                                             project: Path) -> None:
    from framework.rollout.engines import StatsSource, ports_for
    from framework.rollout.prometheus import PrometheusSource

    recipe = load_recipe(["recipe=churn", PROM]).recipe
    assert _fps(recipe) == _fps(churn.recipe)  # where analyses read from is not the rollout
    faster = load_recipe(["recipe=churn", PROM, "monitoring.scrape_interval_s=5"]).recipe
    slow, fast = (ports_for(r, project / ".loom")()["source"] for r in (recipe, faster))
    assert isinstance(slow, PrometheusSource) and isinstance(fast, PrometheusSource)
    assert slow.url == "http://127.0.0.1:9090" and slow.model_id == "churn"
    assert slow.delay_s - fast.delay_s == pytest.approx(15 - 5)  # report interval + scrape
    assert isinstance(ports_for(churn.recipe, project / ".loom")()["source"], StatsSource)
