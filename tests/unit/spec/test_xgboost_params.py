"""XGBoost params are typed and range-checked at validate; unknown names need training.model.extra_params."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter

from framework.backends.ray_train.params import booster_params
from framework.errors import RecipeError
from framework.loading import load_recipe
from framework.spec.xgboost_params import XGBoostParams

ROOT = Path(__file__).resolve().parents[3]

# (id, overrides on top of recipe=churn, fragments the user must see, the key path)
CASES = [
    ("not-a-number", ["training.model.params.max_depth=not-a-number"],
     ["Got 'not-a-number'", "valid integer", "hint: max_depth: Deepest tree, >= 0"], "training.model.params.max_depth"),
    ("negative-depth", ["training.model.params.max_depth=-1"], ["greater than or equal to 0"], "training.model.params.max_depth"),
    ("eta-above-one", ["training.model.params.eta=3"], ["Got 3", "less than or equal to 1", "in (0, 1]"], "training.model.params.eta"),
    ("eta-zero", ["training.model.params.eta=0"], ["greater than 0"], "training.model.params.eta"),
    ("subsample-text", ["training.model.params.subsample=lots"], ["valid number"], "training.model.params.subsample"),
    ("bool-as-number", ["training.model.params.max_depth=true"], ["a number, not true/false"], "training.model.params.max_depth"),
    ("tree-method", ["+training.model.params.tree_method=gpu_hist"], ["'auto', 'hist', 'approx' or 'exact'"], "training.model.params.tree_method"),
    ("eval-metric-typo", ["+training.model.params.eval_metric=aucc"], ["not an XGBoost eval_metric", "Did you mean 'auc'?"], "training.model.params.eval_metric"),
    ("unknown-name", ["+training.model.params.max_dept=3"],
     ["Unknown key", "Did you mean 'max_depth'?", "training.model.extra_params.max_dept"], "training.model.params.max_dept"),
    ("set-elsewhere", ["+training.model.params.n_estimators=300"], ["training.model.num_boost_round"], "training.model.params.n_estimators"),
    ("objective-in-params", ["+training.model.params.objective=reg:squarederror"], ["training.model.objective"], "training.model.params.objective"),
    ("two-names-one-param", ["+training.model.params.learning_rate=0.2"], ["'eta' and 'learning_rate' are the same"], "training.model.params"),
    ("known-in-extra", ["+training.model.extra_params.max_depth=3"], ["Loom checks max_depth: move it to training.model.params"], "training.model.extra_params"),
    ("search-unknown", ["training.model.params.max_dept=choice(2,3)"],
     ["'max_dept' is not an XGBoost parameter", "Did you mean 'max_depth'?", "extra_params"], "training.tuning.search_space.max_dept"),
    ("search-out-of-range", ["training.model.params.subsample=interval(0.5,1.5)"],
     ["reaches 1.5, which subsample refuses", "less than or equal to 1"], "training.tuning.search_space.subsample"),
    ("search-randint-negative", ["training.model.params.max_depth=range(-2,4)"],
     ["reaches -2, which max_depth refuses"], "training.tuning.search_space.max_depth"),
]


@pytest.mark.parametrize("overrides,fragments,path", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_params_are_validate_errors_naming_key_and_rule(project: Path, overrides, fragments, path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=churn", *overrides])
    text = info.value.render()
    for fragment in fragments:
        assert fragment in text, text
    assert path in [p.path for p in info.value.problems], text
    assert all(p.file for p in info.value.problems), text


def test_extra_params_pass_through_unchecked(project: Path) -> None:
    r = load_recipe(["recipe=churn", "+training.model.extra_params.max_cached_hist_node=128",
                     "training.model.params.max_dept=choice(2,3)",
                     "+training.model.extra_params.max_dept=2"]).recipe
    params = booster_params(r)
    assert params["max_cached_hist_node"] == 128 and params["max_depth"] == 4
    assert set(r.training.tuning.search_space) == {"max_dept"}


def test_extra_params_warn_in_plan(project: Path) -> None:
    from framework import api

    planned = api.plan(["recipe=churn", "+training.model.extra_params.max_cached_hist_node=128"])
    assert any("max_cached_hist_node passed to XGBoost unchecked" in w for w in planned.warnings)


def test_sweeps_over_known_params_in_range_validate(project: Path) -> None:
    r = load_recipe(["recipe=churn", "training.model.params.max_depth=choice(3,6,9)",
                     "training.model.params.eta=tag(log,interval(0.01,0.3))",
                     "training.model.params.min_child_weight=range(1,5)"]).recipe
    assert set(r.training.tuning.search_space) == {"max_depth", "eta", "min_child_weight"}


def test_numbers_stay_as_written_so_fingerprints_do_not_move(project: Path) -> None:
    """An int given to a float param stays an int: the plan's fingerprints of old recipes hold."""
    r = load_recipe(["recipe=churn", "+training.model.params.eval_metric=auc"]).recipe
    assert r.training.model.params["min_child_weight"] == 1
    assert type(r.training.model.params["min_child_weight"]) is int
    assert r.training.model.params["eval_metric"] == "auc"
    assert "extra_params" not in r.training.model.model_dump()


def test_a_recipe_set_nthread_wins(project: Path) -> None:
    r = load_recipe(["recipe=churn", "+training.model.params.nthread=3"]).recipe
    assert booster_params(r)["nthread"] == 3


@pytest.mark.parametrize("template", sorted((ROOT / "conf/model").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_templates_hold_known_params(template: Path) -> None:
    params = yaml.safe_load(template.read_text())["params"]
    assert TypeAdapter(XGBoostParams).validate_python(params) == params
