"""The limits on YAML Loom reads: alias bombs, cycles and deep nesting refused fast, with the key and line."""

from __future__ import annotations

import time

import pytest
import yaml

from framework.loading import bounds
from framework.loading.fastyaml import compose_loader


def _bomb(levels: int = 9, width: int = 10) -> str:
    lines = [f"l{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * width) + "]" for i in range(levels)]
    return "\n".join(lines) + "\n"


LOADERS = [bounds.safe_loader(), bounds.bounded(yaml.SafeLoader), compose_loader()]


@pytest.mark.parametrize("loader", LOADERS, ids=["safe", "pure-python", "compose"])
def test_alias_bomb_is_refused_within_a_second(loader) -> None:
    text = _bomb()
    assert len(text) < 2500
    start = time.perf_counter()
    with pytest.raises(bounds.LimitError) as info:
        yaml.load(text, Loader=loader)
    assert time.perf_counter() - start < 1.0
    assert info.value.key.startswith("l3[") and "10,000 values" in info.value.message


@pytest.mark.parametrize("loader", LOADERS, ids=["safe", "pure-python", "compose"])
def test_deep_nesting_is_refused_not_a_recursion_error(loader) -> None:
    with pytest.raises(bounds.LimitError) as info:
        yaml.load("a: " + "[" * 900 + "]" * 900, Loader=loader)
    assert "32 deep" in info.value.message


def test_nesting_up_to_the_limit_reads_as_before() -> None:
    text = "[" * bounds.MAX_DEPTH + "1" + "]" * bounds.MAX_DEPTH
    assert yaml.load(text, Loader=bounds.safe_loader()) == yaml.safe_load(text)
    with pytest.raises(bounds.LimitError):
        yaml.load("[" + text + "]", Loader=bounds.safe_loader())


def test_small_anchors_read_as_before() -> None:
    text = "base: &b {x: 1, y: [1, 2]}\nuse: *b\nmerged:\n  <<: *b\n  z: 2\nlist: [*b, *b]\n"
    assert yaml.load(text, Loader=bounds.safe_loader()) == yaml.safe_load(text)


def test_depth_counts_what_an_alias_brings() -> None:
    deep = "[" * 20 + "]" * 20
    with pytest.raises(bounds.LimitError) as info:
        yaml.load(f"a: &d {deep}\nb: {{c: {'[' * 14}*d{']' * 14}}}\n", Loader=bounds.safe_loader())
    assert info.value.key == "b.c" + "[0]" * 14
    assert info.value.problem_mark.line == 1


def test_a_cycle_is_refused() -> None:
    with pytest.raises(bounds.LimitError) as info:
        yaml.load("a:\n  b: &x {c: [1, *x]}\n", Loader=bounds.safe_loader())
    assert info.value.key == "a.b.c[1]" and "its own anchor" in info.value.message


def test_the_error_names_the_file(tmp_path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    with open(path, encoding="utf-8") as fh, pytest.raises(bounds.LimitError) as info:
        yaml.load(fh, Loader=bounds.safe_loader())
    problem = info.value.problem_at(str)
    assert problem.file == f"{path}:4" and problem.path.startswith("l3[")
    assert "Hint" not in problem.render() and "hint: Recipes are small" in problem.render()


@pytest.mark.parametrize("entry,refused", [
    ("serving: standard", False), ("/store: redis", False), ("override rollout: canary", False),
    ("serving: ../../../x", True), ("serving: /etc/x", True), ("../../x", True), ("serving: a/../../x", True),
    ("../serving: x", True), ("serving: [standard, ../x]", True), ("serving: ~/x", True),
])
def test_defaults_entries_that_leave_the_search_path(entry: str, refused: bool) -> None:
    text = f"defaults:\n  - _self_\n  - {entry}\nname: x\n"
    if not refused:
        assert yaml.load(text, Loader=bounds.safe_loader())["name"] == "x"
        return
    with pytest.raises(bounds.LimitError) as info:
        yaml.load(text, Loader=bounds.safe_loader())
    assert info.value.key == "defaults[1]" and info.value.problem_mark.line == 2


def test_defaults_below_the_top_are_plain_data() -> None:
    assert yaml.load("a:\n  defaults: [../x]\n", Loader=bounds.safe_loader()) == {"a": {"defaults": ["../x"]}}


@pytest.mark.parametrize("text,depth", [
    ("a=1", 0), ("a=[1,[2,{b: 3}]]", 3), ("a='[[[['", 0), ('a="]]" ', 0), ("a=${b.${c}}", 2), (r"a=\[[", 1),
])
def test_nesting_depth(text: str, depth: int) -> None:
    assert bounds.nesting_depth(text) == depth


def test_a_template_whose_defaults_escape_is_named(project) -> None:
    from framework.errors import RecipeError
    from framework.loading import load_recipe

    (project / "conf" / "serving" / "evil.yaml").write_text(
        "# @package serving\ndefaults:\n  - /store: ../../../../etc/x\nreplicas: 1\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=churn", "serving=evil"])
    (problem,) = info.value.problems
    assert problem.file == "conf/serving/evil.yaml:3" and problem.path == "defaults[0]"
    assert "may not leave the template folders" in problem.render()


def test_a_bomb_in_a_recipe_fails_within_a_second(project) -> None:
    from framework.errors import RecipeError
    from framework.loading import load_recipe

    base = (project / "recipes" / "churn.yaml").read_text()
    (project / "recipes" / "bomb.yaml").write_text(base + _bomb(levels=12))
    start = time.perf_counter()
    with pytest.raises(RecipeError, match="10,000 values"):
        load_recipe(["recipe=bomb"])
    assert time.perf_counter() - start < 1.0
