"""Composition: recipes from conf/ templates, overrides, team template folders, origins, sweeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.loading import load_recipe


def test_churn_composes_from_templates(project: Path) -> None:
    loaded = load_recipe(["recipe=churn"])
    r = loaded.recipe
    assert r.rollout.strategy == "canary" and r.rollout.steps == [5, 25, 50, 100]
    assert r.training.model.params["max_depth"] == 4  # the recipe overrides the template
    assert r.training.model.params["eta"] == 0.1  # the template's value
    assert r.serving.auth.api_keys[0].key.env == "LOOM_API_KEY"
    assert loaded.origins.explain("training.model.params.max_depth") == "recipes/churn.yaml"
    assert loaded.origins.explain("training.model.params.eta") == "conf/model/xgboost_binary.yaml"


def test_command_line_overrides_win_and_are_attributed(project: Path) -> None:
    loaded = load_recipe(["recipe=churn", "rollout=blue_green", "training.model.params.max_depth=8",
                          "+training.model.params.gamma=0.5"])
    assert loaded.recipe.rollout.strategy == "blue_green"
    assert loaded.recipe.training.model.params["max_depth"] == 8
    assert loaded.recipe.training.model.params["gamma"] == 0.5
    assert loaded.origins.explain("training.model.params.max_depth") == "command line"
    assert loaded.origins.explain("rollout.bake_time_s") == "conf/rollout/blue_green.yaml"


def test_recipe_by_path(project: Path) -> None:
    assert load_recipe([f"recipe={project / 'recipes' / 'fraud.yaml'}"]).recipe.name == "fraud"


def _team_dir(root: Path) -> Path:
    team = root / "team_templates"
    (team / "rollout").mkdir(parents=True)
    (team / "rollout" / "cautious.yaml").write_text(
        "# @package rollout\nstrategy: canary\nsteps: [1, 10, 100]\ninterval_s: 120\n")
    return team


def test_team_templates_flag(project: Path) -> None:
    team = _team_dir(project)
    loaded = load_recipe(["recipe=churn", "rollout=cautious"], templates=[str(team)])
    assert loaded.recipe.rollout.steps == [1, 10, 100]
    assert loaded.warnings == ()


def test_team_templates_env(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_TEMPLATE_PATH", str(_team_dir(project)))
    assert load_recipe(["recipe=churn", "rollout=cautious"]).recipe.rollout.interval_s == 120


def test_shadowing_warns_and_names_both_files(project: Path) -> None:
    team = _team_dir(project)
    (team / "rollout" / "canary.yaml").write_text("# @package rollout\nstrategy: canary\nsteps: [50, 100]\n")
    loaded = load_recipe(["recipe=churn"], templates=[str(team)])
    assert loaded.recipe.rollout.steps == [50, 100]  # the team folder comes first
    (warning,) = loaded.warnings
    assert "team_templates/rollout/canary.yaml" in warning and "conf/rollout/canary.yaml" in warning


def test_sweep_syntax_becomes_search_space(project: Path) -> None:
    r = load_recipe(["recipe=churn", "training.model.params.max_depth=choice(3,6,9)",
                     "training.model.params.eta=tag(log,interval(0.01,0.3))",
                     "training.model.params.min_child_weight=range(1,5)"]).recipe
    space = r.training.tuning.search_space
    assert space["max_depth"].values == [3, 6, 9]
    assert (space["eta"].type, space["eta"].low, space["eta"].high) == ("loguniform", 0.01, 0.3)
    assert (space["min_child_weight"].type, space["min_child_weight"].high) == ("randint", 5)
    assert (r.training.tuning.metric, r.training.tuning.mode) == ("auc", "max")


def test_env_driven_field_resolves(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    r = load_recipe(["recipe=churn", "env=cluster"]).recipe
    assert r.env.ray_address == "127.0.0.1:6379"


def test_every_recipe_in_the_repository_validates(project: Path) -> None:
    for path in sorted((project / "recipes").glob("*.yaml")):
        assert load_recipe([f"recipe={path.stem}"]).recipe.name == path.stem
