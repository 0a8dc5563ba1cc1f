"""Source checks (every problem names the recipe key and the file) and source content fingerprints."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from framework.backends.feast.sources import check_sources, fingerprint_sources
from framework.spec import Recipe

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def recipe(**source_changes) -> Recipe:
    sources = {
        "profiles": {"type": "parquet", "path": "data/features.parquet", "timestamp_field": "event_timestamp",
                     "created_timestamp_field": "created"},
        "labels": {"type": "parquet", "path": "data/labels.parquet", "timestamp_field": "event_timestamp"},
    }
    for name, change in source_changes.items():
        sources[name] = {**sources[name], **change}
    return Recipe.model_validate({
        "schema_version": 1, "name": "shop",
        "data": {"sources": sources},
        "features": {
            "entities": {"customer": {"join_keys": ["customer_id"], "value_type": "int64"}},
            "views": {"profile": {"entities": ["customer"], "source": "profiles",
                                  "fields": {"spend": "float64", "visits": "int64", "tier": "string"}}},
            "service": {"name": "shop_v1", "features": ["profile:*"]},
        },
        "training": {"label": {"source": "labels", "column": "bought"},
                     "model": {"type": "xgboost", "objective": "binary:logistic"}},
        "serving": {"auth": {"enabled": False}},
    })


def features(**changes) -> pd.DataFrame:
    frame = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [T0, T0], "created": [T0, T0],
                          "spend": [1.5, 2.0], "visits": pd.array([1, 2], dtype="int32"),
                          "tier": ["a", "b"]})
    return frame.assign(**changes)


def labels(**changes) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [T0, T0], "bought": [1, 0]}).assign(**changes)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    features().to_parquet(tmp_path / "data/features.parquet", index=False)
    labels().to_parquet(tmp_path / "data/labels.parquet", index=False)
    return tmp_path


def one_problem(project: Path, r: Recipe | None = None):
    problems = check_sources(r or recipe(), project)
    assert len(problems) == 1, [p.render() for p in problems]
    return problems[0]


def test_matching_files_have_no_problems(files):
    assert check_sources(recipe(), files) == []


def test_missing_file_names_the_path_key_and_the_file(files):
    (files / "data/labels.parquet").unlink()
    p = one_problem(files)
    assert p.path == "data.sources.labels.path"
    assert str(files / "data/labels.parquet") in p.render() and "File not found" in p.render()


@pytest.mark.parametrize(("changes", "key", "text"), [
    ({"spend": ["x", "y"]}, "features.views.profile.fields.spend",
     "has type string, which does not fit float64"),
    ({"visits": [1.5, 2.5]}, "features.views.profile.fields.visits",
     "has type double, which does not fit int64"),
    ({"tier": [1, 2]}, "features.views.profile.fields.tier", "does not fit string"),
    ({"customer_id": ["1", "2"]}, "features.entities.customer.value_type", "'customer_id'"),
    ({"event_timestamp": ["2026-01-01", "x"]}, "data.sources.profiles.timestamp_field",
     "must be a timestamp"),
    ({"created": [1, 2]}, "data.sources.profiles.created_timestamp_field", "must be a timestamp"),
], ids=["float-got-string", "int-got-double", "string-got-int", "key-type", "timestamp", "created"])
def test_each_wrong_column_is_one_problem_naming_key_and_file(files, changes, key, text):
    features(**changes).to_parquet(files / "data/features.parquet", index=False)
    p = one_problem(files)
    assert p.path == key
    assert text in p.render() and str(files / "data/features.parquet") in p.render()


def test_missing_columns_list_the_columns_there(files):
    features().drop(columns=["tier"]).to_parquet(files / "data/features.parquet", index=False)
    p = one_problem(files)
    assert p.path == "features.views.profile.fields.tier"
    assert "Column 'tier' not found" in p.render() and "customer_id, event_timestamp" in p.render()


def test_missing_label_column_names_the_label_key(files):
    pd.DataFrame({"customer_id": [1], "event_timestamp": [T0]}).to_parquet(
        files / "data/labels.parquet", index=False)
    p = one_problem(files)
    assert p.path == "training.label.column" and str(files / "data/labels.parquet") in p.render()


def test_unreadable_file_is_reported(files):
    (files / "data/features.parquet").write_text("not parquet")
    p = one_problem(files)
    assert p.path == "data.sources.profiles.path" and "not a readable parquet file" in p.render()


def test_csv_sources_are_checked_with_inferred_types(files):
    features().to_csv(files / "data/features.csv", index=False)
    r = recipe(profiles={"type": "csv", "path": "data/features.csv"})
    assert check_sources(r, files) == []


def test_fingerprints_are_content_hashes_that_change_with_the_bytes(files):
    r = recipe()
    first = fingerprint_sources(r, files)
    raw = (files / "data/labels.parquet").read_bytes()
    assert first["labels"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert fingerprint_sources(r, files) == first
    pd.DataFrame({"customer_id": [2], "event_timestamp": [T0], "bought": [0]}).to_parquet(
        files / "data/labels.parquet", index=False)
    second = fingerprint_sources(r, files)
    assert second["profiles"] == first["profiles"] and second["labels"] != first["labels"]
    (files / "data/labels.parquet").unlink()
    assert set(fingerprint_sources(r, files)) == {"profiles"}


def test_importing_the_backend_does_not_import_feast():
    code = ("import sys, framework.backends.feast as f, framework.backends.feast.backend, "
            "framework.backends.feast.online, framework.backends.feast.sources, "
            "framework.backends.feast.commands; f.FeastBackend; "
            "print(sorted(m for m in ('feast', 'pandas', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
