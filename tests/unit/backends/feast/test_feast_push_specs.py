"""``push: true`` views: the spec rules, the view spec dict, the Feast objects and the fingerprints."""

from __future__ import annotations

from typing import Any

import pytest

from framework.backends.feast.objects import build
from framework.backends.feast.push import push_source_name
from framework.backends.feast.specs import source_spec, view_spec
from framework.compile.compiler import compile_steps
from framework.spec import Recipe
from framework.spec.checks import check_push_views


def recipe_dict(**view: Any) -> dict[str, Any]:
    return {
        "schema_version": 1, "name": "shop",
        "data": {"sources": {
            "s": {"type": "parquet", "path": "f.parquet", "timestamp_field": "ts"},
            "labels": {"type": "parquet", "path": "l.parquet", "timestamp_field": "ts"},
        }},
        "features": {
            "entities": {"customer": {"join_keys": ["customer_id"]}},
            "views": {"v": {"entities": ["customer"], "source": "s", "fields": {"x": "float64"}, **view}},
            "service": {"name": "svc", "features": ["v:x"]},
        },
        "training": {"label": {"source": "labels", "column": "y"},
                     "model": {"type": "xgboost", "objective": "binary:logistic"}},
        "serving": {"auth": {"enabled": False}},
    }


def recipe(**view: Any) -> Recipe:
    return Recipe.model_validate(recipe_dict(**view))


def view_fp(r: Recipe) -> dict[str, str]:
    return {s.address: s.fingerprint for s in compile_steps(r, {"s": "sha256:aa", "labels": "sha256:bb"})}


def test_push_defaults_to_off_and_is_described():
    field = Recipe.model_json_schema()["$defs"]["FeatureView"]["properties"]["push"]
    assert field["default"] is False and "push source" in field["description"]
    assert recipe().features.views["v"].push is False


def test_a_push_view_spec_names_its_push_source_and_others_have_no_key():
    assert push_source_name("v") == "v_push"
    assert view_spec(recipe(push=True), "v", "sha256:1")["push_source"] == "v_push"
    assert "push_source" not in view_spec(recipe(), "v", "sha256:1")  # unchanged for old views


def test_the_feast_view_of_a_push_view_reads_its_push_source_over_the_file():
    from feast import FileSource, PushSource

    r = recipe(push=True)
    ctx = type("Ctx", (), {"recipe": r})()
    spec = {"sources": {"s": source_spec(ctx, "s", "/data/f.parquet")},
            "views": {"v": {**view_spec(r, "v", "sha256:1"),
                            "push_meta": ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]}}}
    fv = build(spec)["views"]["v"]
    assert isinstance(fv.stream_source, PushSource) and fv.stream_source.name == "v_push"
    assert isinstance(fv.batch_source, FileSource) and fv.batch_source.path == "/data/f.parquet"
    assert fv.stream_source.created_timestamp.isoformat() == "2026-01-01T00:00:00+00:00"  # pinned
    plain = build({"sources": spec["sources"], "views": {"v": view_spec(recipe(), "v", "sha256:1")}})
    assert plain["views"]["v"].stream_source is None


def test_push_changes_the_view_fingerprint_and_off_keeps_the_old_one():
    off, on = view_fp(recipe()), view_fp(recipe(push=True))
    assert view_fp(recipe(push=False)) == off
    changed = [a for a in off if off[a] != on[a]]
    assert changed[0] == "feast.view.v" and "feast.entity.customer" not in changed
    step = next(s for s in compile_steps(recipe(push=True), {}) if s.address == "feast.view.v")
    assert step.attrs["push"] is True


@pytest.mark.parametrize(("view", "sources", "label", "fragment"), [
    ({"online": False}, None, None, "it needs online: true"),
    ({}, {"s": {"type": "csv", "path": "f.csv", "timestamp_field": "ts"}}, None,
     "source 's' is csv, and only parquet sources can take them"),
    ({}, None, "s", "Source 's' is also read by training.label"),
], ids=["offline-view", "csv-source", "shared-with-label"])
def test_check_push_views_names_the_key_and_the_fix(view, sources, label, fragment):
    d = recipe_dict(push=True, **view)
    d["data"]["sources"].update(sources or {})
    if label:
        d["training"]["label"]["source"] = label
    problems = check_push_views(Recipe.model_validate(d))
    assert len(problems) == 1
    assert problems[0].path == "features.views.v.push" and fragment in problems[0].message
    assert problems[0].hint


def test_check_push_views_refuses_a_source_shared_with_another_view():
    d = recipe_dict(push=True)
    d["features"]["views"]["w"] = {"entities": ["customer"], "source": "s", "fields": {"z": "int64"}}
    problems = check_push_views(Recipe.model_validate(d))
    assert [p.message for p in problems] == [
        "Source 's' is also read by w; pushed rows would reach them with only the columns of view "
        "'v' filled."]
    assert check_push_views(recipe(push=False)) == [] and check_push_views(recipe(push=True)) == []
