"""RolloutBackend without Ray: which steps it takes, the plan's phases, nothing to roll out."""

from __future__ import annotations

import pytest

from framework.backends.base import RunContext
from framework.compile.compiler import compile_steps
from framework.errors import BackendError
from framework.rollout.backend import RolloutBackend
from framework.rollout.fakes import FakePromoter
from framework.rollout.phases import spec_from_recipe, spec_from_steps


def _recipe(project, *overrides):
    from framework.loading.compose import load_recipe

    return load_recipe(["recipe=churn", *overrides], project_dir=project).recipe


def _rollout_steps(recipe):
    return [s for s in compile_steps(recipe, {}) if s.kind == "rollout.step"]


@pytest.mark.parametrize("choice", ["rollout=canary", "rollout=blue_green"])
def test_the_plan_steps_and_the_recipe_give_the_same_phases(project, choice):
    recipe = _recipe(project, choice)
    from_plan, from_recipe = spec_from_steps(_rollout_steps(recipe)), spec_from_recipe(recipe.rollout)
    assert from_plan.phases == from_recipe.phases
    assert from_plan.addresses() == [s.address for s in _rollout_steps(recipe)]
    assert dict(from_plan.fingerprints).keys() == set(from_plan.addresses())


def test_blue_green_phases_are_shadow_then_a_timed_bake(project):
    spec = spec_from_recipe(_recipe(project, "rollout=blue_green").rollout)
    shadow, switch = spec.phases
    assert (shadow.weight, shadow.shadow_percent, shadow.role, shadow.gate) == (0, 100, "shadow", "pass")
    assert (switch.weight, switch.gate, switch.hold_s) == (100, "time", 300)
    assert spec.promote_address == "rollout.blue_green.retire_blue"


def test_first_deploy_has_nothing_to_roll_out_and_needs_no_ray(project, tmp_path):
    recipe = _recipe(project, "rollout=canary")
    first = _rollout_steps(recipe)[0]
    ctx = RunContext(recipe=recipe, project_dir=project, workspace=tmp_path / "ws",
                     outputs={"serving.deploy": {"app": "churn", "stable_version": "1",
                                                 "candidate_version": None}})
    promoter = FakePromoter()
    backend = RolloutBackend(ports=lambda: {"promoter": promoter})
    out = backend.apply(first, ctx)
    assert out["status"] == "nothing to roll out"
    assert promoter.champion == "1"  # the first version serves all traffic: it is the champion
    assert backend.observe(first, ctx) is None
    ctx.outputs[first.address] = out
    second = _rollout_steps(recipe)[1]
    assert backend.apply(second, ctx)["status"] == "nothing to roll out"


def test_direct_steps_belong_to_the_serving_backend(project, tmp_path):
    recipe = _recipe(project, "rollout=direct")
    step = _rollout_steps(recipe)[0]
    ctx = RunContext(recipe=recipe, project_dir=project, workspace=tmp_path)
    with pytest.raises(BackendError, match="serving backend"):
        RolloutBackend().apply(step, ctx)


def test_importing_the_rollout_package_loads_no_engine_sdk():
    import subprocess
    import sys

    code = ("import sys, framework.rollout.backend, framework.rollout.actor, "
            "framework.rollout.engines; "
            "print([m for m in ('ray', 'mlflow', 'xgboost', 'feast') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_controller_follows_the_plan_not_the_recipe(project, tmp_path):
    # The compiler is the one author of a rollout's phases: a saved plan's steps win over the
    # recipe the backend happens to hold.
    from framework.rollout.backend import _spec

    planned = _rollout_steps(_recipe(project, "rollout=canary", "rollout.steps=[10,100]"))
    ctx = RunContext(recipe=_recipe(project, "rollout=canary"), project_dir=project,
                     workspace=tmp_path / "ws", plan_steps=tuple(planned))
    spec = _spec(planned[0], ctx)
    assert [p.weight for p in spec.phases] == [10, 100]
    assert dict(spec.fingerprints) == {s.address: s.fingerprint for s in planned}
    without_plan = RunContext(recipe=ctx.recipe, project_dir=project, workspace=tmp_path / "ws")
    assert [p.weight for p in _spec(planned[0], without_plan).phases] == [5, 25, 50, 100]
