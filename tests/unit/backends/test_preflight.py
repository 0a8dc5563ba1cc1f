"""Preflight in `loom plan`: data that does not match the recipe and secrets that do not resolve
are one RecipeError (file, recipe key, fix), before any step runs and without importing an engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from framework import api
from framework.backends.feast.sources import check_sources
from framework.backends.preflight import preflight
from framework.errors import RecipeError
from framework.loading import load_recipe

TITLE = "Preflight: data does not match the recipe"


def preflight_error(*overrides: str, **kw) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        api.plan(["recipe=churn", *overrides], **kw)
    return info.value


def by_path(err: RecipeError) -> dict[str, str]:
    return {p.path: p.render() for p in err.problems}


def test_every_data_and_secret_problem_is_one_error(project: Path, monkeypatch) -> None:
    monkeypatch.delenv("LOOM_API_KEY")
    err = preflight_error("features.views.customer_profile.fields.monthly_charges=string",
                          "+features.views.customer_profile.fields.tenure_monts=int64",
                          "training.label.column=churnd")
    assert err.title == TITLE
    found = by_path(err)
    assert set(found) == {"features.views.customer_profile.fields.monthly_charges",
                          "features.views.customer_profile.fields.tenure_monts",
                          "training.label.column", "serving.auth.api_keys[0].key"}
    assert "has type double, which does not fit string" in found[
        "features.views.customer_profile.fields.monthly_charges"]
    assert "Declare it as `monthly_charges: float64`" in found[
        "features.views.customer_profile.fields.monthly_charges"]
    assert "Did you mean 'tenure_months'?" in found["features.views.customer_profile.fields.tenure_monts"]
    assert "Column 'churnd' not found" in found["training.label.column"]
    assert "Did you mean 'churned'?" in found["training.label.column"]
    key = found["serving.auth.api_keys[0].key"]
    assert key.startswith("conf/serving/standard.yaml: serving.auth.api_keys[0].key: ")
    assert "Environment variable LOOM_API_KEY is not set; serving.deploy needs it" in key
    assert "export LOOM_API_KEY=" in key and "SecretRef" not in err.render()
    assert all(p.file for p in err.problems)


def test_a_missing_file_is_reported_with_the_other_problems(project: Path) -> None:
    err = preflight_error("data.sources.churn_labels.path=data/churn/nope.parquet",
                          "features.entities.customer.value_type=int64")
    found = by_path(err)
    assert "File not found" in found["data.sources.churn_labels.path"]
    assert "Column 'customer_id'" in found["features.entities.customer.value_type"]
    assert "has type string, which does not fit int64" in found["features.entities.customer.value_type"]
    assert "Set features.entities.customer.value_type: string" in found["features.entities.customer.value_type"]


def test_an_unset_key_alone_is_a_secrets_error(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOOM_API_KEY", "")
    err = preflight_error()
    assert err.title == "Preflight: secrets the plan needs are not available"
    assert [p.path for p in err.problems] == ["serving.auth.api_keys[0].key"]
    assert "LOOM_API_KEY is empty" in err.render()


def test_training_only_needs_no_api_key(project: Path, monkeypatch) -> None:
    """`loom train` (the plan cut at registry.register) checks only what it runs."""
    monkeypatch.delenv("LOOM_API_KEY")
    planned = api.plan(["recipe=churn"], until_kind="registry.register")
    assert planned.preflighted and planned.plan.steps[-1].kind == "registry.register"


def test_a_saved_plan_is_preflighted_before_apply_runs_a_step(project: Path, monkeypatch) -> None:
    (project / "plan.json").write_text(api.plan(["recipe=churn"]).plan.to_json())
    monkeypatch.delenv("LOOM_API_KEY")
    started = []
    with pytest.raises(RecipeError, match="LOOM_API_KEY is not set"):
        api.apply(api.load_plan(project / "plan.json"),
                  on_step=lambda step, phase: started.append(step.address))
    assert started == []


def test_plan_with_a_fake_backend_skips_preflight(project: Path, monkeypatch) -> None:
    from framework.backends.fake import FakeBackend

    monkeypatch.delenv("LOOM_API_KEY")
    assert api.plan(["recipe=churn"], backend=FakeBackend()).plan.has_changes


def test_plan_imports_no_engine_and_no_pandas(project: Path) -> None:
    code = ("import sys; from framework import api; api.plan(['recipe=churn']); "
            "print(sorted(m for m in ('ray', 'feast', 'mlflow', 'xgboost', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "LOOM_API_KEY": "k"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --- the secrets each step kind needs -------------------------------------------------------------

def redis_recipe(project: Path, *extra: str):
    return load_recipe(["recipe=churn", "store=redis",
                        "+features.store.online.password={env: LOOM_REDIS_PASSWORD}", *extra]).recipe


def test_the_redis_password_is_needed_by_store_steps_only(project: Path, monkeypatch) -> None:
    monkeypatch.delenv("LOOM_REDIS_PASSWORD", raising=False)
    r = redis_recipe(project)
    (p,) = preflight(r, project, {"feast.materialize"})
    assert p.path == "features.store.online.password"
    assert "LOOM_REDIS_PASSWORD is not set; feast.materialize needs it (the Redis password)" in p.render()
    assert "export LOOM_REDIS_PASSWORD=" in p.render()
    assert preflight(r, project, {"monitoring.rules", "registry.register"}) == []
    monkeypatch.setenv("LOOM_REDIS_PASSWORD", "pw")
    assert preflight(r, project, {"feast.materialize"}) == []


def test_secret_files_and_keys_files_must_be_readable(project: Path) -> None:
    r = load_recipe(["recipe=churn", "serving.auth.api_keys.0.key={file: secrets/key.txt}",
                     "+serving.auth.keys_file=secrets/keys.json"]).recipe
    found = {p.path: p.render() for p in preflight(r, project, {"serving.deploy"})}
    assert "Secret file secrets/key.txt is missing or unreadable" in found["serving.auth.api_keys[0].key"]
    assert "Keys file not found" in found["serving.auth.keys_file"]
    (project / "secrets").mkdir()
    (project / "secrets/key.txt").write_text("k\n")
    (project / "secrets/keys.json").write_text(json.dumps([]))
    assert preflight(r, project, {"serving.deploy"}) == []


def test_auth_off_needs_no_key(project: Path, monkeypatch) -> None:
    monkeypatch.delenv("LOOM_API_KEY")
    r = load_recipe(["recipe=churn", "serving.auth.enabled=false"]).recipe
    assert preflight(r, project, {"serving.deploy"}) == []


# --- label values and column types (check_sources on small files) ----------------------------------

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def shop(objective: str = "binary:logistic", **model) -> dict:
    return {
        "schema_version": 1, "name": "shop",
        "data": {"sources": {
            "profiles": {"type": "parquet", "path": "f.parquet", "timestamp_field": "ts"},
            "labels": {"type": "parquet", "path": "l.parquet", "timestamp_field": "ts"}}},
        "features": {
            "entities": {"customer": {"join_keys": ["customer_id"], "value_type": "int64"}},
            "views": {"profile": {"entities": ["customer"], "source": "profiles",
                                  "fields": {"spend": "float64", "tier": "string"}}},
            "service": {"name": "shop_v1", "features": ["profile:*"]}},
        "training": {"label": {"source": "labels", "column": "y"},
                     "model": {"type": "xgboost", "objective": objective, **model}},
        "serving": {"auth": {"enabled": False}},
    }


def label_problems(tmp_path: Path, y: list, objective: str = "binary:logistic", tier=None, **model):
    from framework.spec import Recipe

    n = len(y)
    tier = tier if tier is not None else pd.Series(["a", "b"] * n, dtype="category")[:n]
    pd.DataFrame({"customer_id": range(n), "ts": [T0] * n, "spend": [1.0] * n,
                  "tier": tier}).to_parquet(tmp_path / "f.parquet", index=False)
    pd.DataFrame({"customer_id": range(n), "ts": [T0] * n, "y": y}).to_parquet(tmp_path / "l.parquet", index=False)
    return [p.render() for p in check_sources(Recipe.model_validate(shop(objective, **model)), tmp_path)]


@pytest.mark.parametrize(("y", "objective", "model", "fragment"), [
    ([0, 1, 2], "binary:logistic", {}, "its values are 0, 1, 2, but binary:logistic needs labels 0 and 1"),
    ([1, 1, 1], "binary:logistic", {}, "its values are 1, but binary:logistic needs"),
    (["yes", "no"], "binary:logistic", {}, "has type string (values 'no', 'yes'), but binary:logistic"),
    ([1.0, None], "binary:logistic", {}, "1 of 2 rows have no label"),
    ([0, 1, 3], "multi:softprob", {"num_class": 3}, "it holds 3, but with num_class=3 multi:softprob needs integer classes 0..2"),
    ([0.5, 1.0], "multi:softprob", {"num_class": 3}, "it holds 0.5"),
    (["a", "b"], "reg:squarederror", {}, "has type string, but a regression objective needs numeric labels"),
], ids=["binary-three", "binary-one-class", "binary-strings", "nulls", "multi-range", "multi-fraction",
        "regression-strings"])
def test_labels_must_suit_the_objective(tmp_path: Path, y, objective, model, fragment) -> None:
    (text,) = label_problems(tmp_path, y, objective, **model)
    assert text.startswith("training.label.column: Got 'y'. Label column 'y' in ")
    assert fragment in text, text


@pytest.mark.parametrize(("y", "objective", "model"), [
    ([0, 1], "binary:logistic", {}), ([True, False], "binary:logistic", {}), ([0.0, 1.0], "binary:logistic", {}),
    ([0, 2, 1], "multi:softprob", {"num_class": 3}), ([0.5, 12], "reg:squarederror", {}),
])
def test_good_labels_pass(tmp_path: Path, y, objective, model) -> None:
    assert label_problems(tmp_path, y, objective, **model) == []


def test_string_features_accept_string_and_categorical_columns(tmp_path: Path) -> None:
    assert label_problems(tmp_path, [0, 1], tier=["a", "b"]) == []  # plain strings
    assert label_problems(tmp_path, [0, 1]) == []  # pandas category: dictionary<string>
    (text,) = label_problems(tmp_path, [0, 1], tier=[1, 2])
    assert "features.views.profile.fields.tier" in text and "does not fit string" in text
    assert "Declare it as `tier: int32`" in text or "Declare it as `tier: int64`" in text


def test_csv_label_reads_one_column(tmp_path: Path) -> None:
    from framework.spec import Recipe

    pd.DataFrame({"customer_id": [1, 2], "ts": [T0, T0], "spend": [1.0, 2.0], "tier": ["a", "b"]}).to_parquet(
        tmp_path / "f.parquet", index=False)
    pd.DataFrame({"customer_id": [1, 2], "ts": [T0, T0], "y": ["x", "z"]}).to_csv(tmp_path / "l.csv", index=False)
    spec = shop()
    spec["data"]["sources"]["labels"].update(type="csv", path="l.csv")
    (p,) = check_sources(Recipe.model_validate(spec), tmp_path)
    assert p.path == "training.label.column" and "has type string" in p.render()
