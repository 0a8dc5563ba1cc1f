"""What a ``${...}`` may do in a recipe: the grammar-level reading and the hostile-input rules built on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.errors import RecipeError
from framework.loading import hostile, interpolation, load_recipe, resolve_saved


def test_read_finds_nested_resolvers_and_references() -> None:
    resolvers, refs = interpolation.read("x ${${..tags.k}:SECRET} ${oc.env:A,${b.c}} ${a[0].b}")
    assert [(r.name, r.built, r.args_built) for r in resolvers] == [
        ("${..tags.k}", True, False), ("oc.env", False, True)]
    assert [(r.key, r.built) for r in refs] == [("..tags.k", False), ("b.c", False), ("a[0].b", False)]


def test_read_refuses_what_omegaconf_cannot_parse() -> None:
    with pytest.raises(interpolation.Unreadable):
        interpolation.read("${a")
    with pytest.raises(interpolation.Unreadable, match="32 deep"):
        interpolation.read("${" * 300 + "a" + "}" * 300)


@pytest.mark.parametrize("path,key,target", [
    ("description", "registry.tracking_uri", ["registry", "tracking_uri"]),
    ("serving.http.host", ".port", ["serving", "http", "port"]),
    ("serving.http.host", "..auth.api_keys[0].key", ["serving", "auth", "api_keys", "0", "key"]),
    ("a.l[2]", ".0", ["a", "l", "0"]),
])
def test_relative_references(path: str, key: str, target: list[str]) -> None:
    assert interpolation.target_parts(path, key) == target


RAW = {
    "registry": {"tracking_uri": "${oc.env:MLFLOW_TRACKING_URI,file:x}"},
    "serving": {"auth": {"api_keys": [{"name": "a", "key": "${oc.env:K}"}]}, "http": {"host": "h"}},
    "env": {"workspace_dir": ".loom"},
    "training": {"model": {"params": {"k": "oc.env", "depth": 3}}},
}


def _scan(**values: str) -> list[str]:
    raw = {**RAW, **values}
    problems, _ = hostile.scan(raw, lambda path: "recipe.yaml")
    return [f"{p.path}: {p.message}" for p in problems]


@pytest.mark.parametrize("value,fragment", [
    ("${${training.model.params.k}:HOME}", "A resolver name cannot be built by interpolation"),
    ("${${.training.model.params.k}:HOME}", "A resolver name cannot be built"),
    ("${oc.${name}:HOME}", "A resolver name cannot be built"),
    ("${${name}}", "A reference's key cannot be built"),
    ("uri ${registry.tracking_uri}", "copies registry.tracking_uri (an environment-driven field) into description"),
    ("${.registry}", "copies registry.tracking_uri"),
    ("${serving.auth.api_keys[0].key}", "copies serving.auth.api_keys[0].key (a secret)"),
    ("${serving.auth.api_keys.0.key.env}", "copies serving.auth.api_keys[0].key (a secret)"),
    ("${serving}", "copies serving.auth.api_keys[0].key"),
    ("\\${oc.env:HOME}", "An escaped \\${...} is not allowed"),
    ("${oc.decode:'1'}", "Resolver 'oc.decode' is not allowed"),
    ("${ now :%Y}", "Resolver 'now' is not allowed"),
    ("${a", "Cannot read this interpolation"),
])
def test_hostile_interpolation_is_refused(value: str, fragment: str) -> None:
    found = _scan(description=value)
    assert any(fragment in p and p.startswith("description: ") for p in found), found


@pytest.mark.parametrize("value", ["${training.model.params.depth}", "${serving.http.host}:8000", "${.name}"])
def test_plain_references_pass(value: str) -> None:
    assert _scan(description=value, name="x") == []


def test_env_var_name_must_be_written_out() -> None:
    raw = {**RAW, "env": {"ray_address": "${oc.env:${name}}"}, "name": "HOME"}
    problems, _ = hostile.scan(raw, lambda path: "recipe.yaml")
    assert [p.message for p in problems] == ["The variable name in ${oc.env:...} cannot be built by interpolation."]


def test_a_copy_into_an_env_driven_field_is_refused_too() -> None:
    raw = {**RAW, "env": {"ray_address": "${registry.tracking_uri}"}}
    problems, _ = hostile.scan(raw, lambda path: "recipe.yaml")
    assert [p.path for p in problems] == ["env.ray_address"]


def test_a_saved_plan_with_a_built_resolver_is_refused(project: Path) -> None:
    data = load_recipe(["recipe=churn"]).data
    data["training"]["model"]["params"]["k"] = "oc.env"
    data["description"] = "${${training.model.params.k}:HOME}"
    with pytest.raises(RecipeError, match="resolver name cannot be built"):
        resolve_saved(data)


def test_nothing_of_the_environment_reaches_the_data(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_TEST_SECRET", "s3cr3t-value")
    for override in ["description='${${training.model.params.k}:LOOM_TEST_SECRET}'",
                     "description=${registry.tracking_uri}"]:
        with pytest.raises(RecipeError) as info:
            load_recipe(["recipe=churn", "+training.model.params.k=oc.env",
                         "++registry.tracking_uri=${oc.env:LOOM_TEST_SECRET}", override])
        text = info.value.render()
        assert "s3cr3t-value" not in text and "Cannot parse" not in text, text


def test_references_that_multiply_are_refused_fast() -> None:
    import time

    raw = {"b0": "x" * 10, **{f"b{i}": f"${{b{i - 1}}}" * 8 for i in range(1, 10)}}
    start = time.perf_counter()
    problems, _ = hostile.scan(raw, lambda path: "recipe.yaml")
    assert time.perf_counter() - start < 1.0
    assert [p.path for p in problems] == ["b6"] and "1,000,000 characters" in problems[0].message


def test_a_long_chain_of_references_is_refused() -> None:
    raw = {"b0": "x", **{f"b{i}": f"${{b{i - 1}}}" for i in range(1, 30)}}
    problems, _ = hostile.scan(raw, lambda path: "recipe.yaml")
    assert len(problems) == 1 and problems[0].path == "b11" and "chain more than 10 deep" in problems[0].message


def test_a_few_references_pass() -> None:
    raw = {"a": {"x": 1, "y": [1, 2]}, "b": "${a}", "c": "${b} and ${a.x}", "d": "${c}"}
    assert hostile.scan(raw, lambda path: "recipe.yaml") == ([], {})
