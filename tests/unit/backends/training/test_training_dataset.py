"""The training parquet is checked and split reproducibly: seeded random, or by label time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.backends.ray_train.dataset import load_splits
from framework.backends.ray_train.params import booster_params, stopping_metric, worker_threads
from framework.errors import DataError
from framework.spec import Recipe

FEATURES = ["f_a", "f_b"]


def recipe(split: dict | None = None, objective: str = "binary:logistic", **model) -> Recipe:
    return Recipe.model_validate({
        "schema_version": 1, "name": "toy",
        "data": {"sources": {"s": {"type": "parquet", "path": "s.parquet", "timestamp_field": "ts"}}},
        "features": {
            "entities": {"e": {"join_keys": ["id"]}},
            "views": {"v": {"entities": ["e"], "source": "s", "fields": {"f_a": "float64", "f_b": "int64"}}},
            "service": {"name": "svc", "features": ["v:*"]},
        },
        "training": {"label": {"source": "s", "column": "y"},
                     "split": split or {"type": "random", "seed": 1},
                     "model": {"type": "xgboost", "objective": objective, **model}},
    })


def dataset(tmp_path: Path, n: int = 100, **columns) -> Path:
    frame = pd.DataFrame({
        "id": np.arange(n), "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
        + pd.to_timedelta(np.arange(n)[::-1], unit="h"),
        "y": np.arange(n) % 2, "f_a": np.linspace(0, 1, n), "f_b": np.arange(n),
    })
    for name, values in columns.items():
        frame[name] = values
    path = tmp_path / "ds.parquet"
    frame.to_parquet(path, index=False)
    return path


def test_random_split_is_seeded_and_covers_every_row(tmp_path: Path) -> None:
    path = dataset(tmp_path)
    a, b = load_splits(path, recipe()), load_splits(path, recipe())
    assert a.rows == {"train": 70, "validation": 15, "test": 15}
    np.testing.assert_array_equal(a.x_test, b.x_test)
    every = np.concatenate([a.x_train[:, 1], a.x_val[:, 1], a.x_test[:, 1]])
    assert sorted(every) == list(range(100))
    assert a.feature_names == FEATURES and a.feature_types == {"f_a": "float64", "f_b": "int64"}
    other = load_splits(path, recipe({"type": "random", "seed": 2}))
    assert not np.array_equal(a.x_test, other.x_test)


def test_time_split_tests_on_the_newest_rows(tmp_path: Path) -> None:
    # Row i has time T0 + (99 - i) hours: the newest rows have the smallest f_b.
    s = load_splits(dataset(tmp_path), recipe({"type": "time", "validation_fraction": 0.1,
                                               "test_fraction": 0.2}))
    assert sorted(s.x_test[:, 1]) == list(range(20))
    assert sorted(s.x_val[:, 1]) == list(range(20, 30))
    assert s.x_train[:, 1].min() == 30


@pytest.mark.parametrize("change, fragment", [
    ({"drop": "f_b"}, "lacks column(s) ['f_b']"),
    ({"y": [None] * 100}, "has 100 empty value(s)"),
    ({"y": ["a"] * 100}, "Loom trains on numeric labels"),
    ({"y": [2] * 100}, "needs labels 0 or 1"),
], ids=["missing-column", "empty-label", "string-label", "bad-binary"])
def test_bad_datasets_are_data_errors(tmp_path: Path, change: dict, fragment: str) -> None:
    path = dataset(tmp_path)
    frame = pd.read_parquet(path)
    if "drop" in change:
        frame = frame.drop(columns=[change.pop("drop")])
    for name, values in change.items():
        frame[name] = values
    frame.to_parquet(path, index=False)
    with pytest.raises(DataError) as err:
        load_splits(path, recipe())
    assert fragment in str(err.value)


def test_missing_file_says_which_step_writes_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="written by the 'training.dataset' step"):
        load_splits(tmp_path / "nope.parquet", recipe())


def test_booster_params_add_what_loom_needs() -> None:
    params = booster_params(recipe(params={"max_depth": 3, "eta": 0.2}), {"max_depth": 5})
    assert params["max_depth"] == 5 and params["eta"] == 0.2
    assert params["objective"] == "binary:logistic" and params["nthread"] == 1
    assert stopping_metric(params) == "auc"
    multi = booster_params(recipe(objective="multi:softprob", num_class=3))
    assert multi["num_class"] == 3 and stopping_metric(multi) == "mlogloss"
    assert worker_threads(0.5) == 1 and worker_threads(4) == 4


def test_gpu_flag_puts_xgboost_on_cuda() -> None:
    data = recipe().model_dump(mode="json")
    data["training"]["scaling"] = {"num_workers": 1, "cpus_per_worker": 2, "use_gpu": True}
    params = booster_params(Recipe.model_validate(data))
    assert params["device"] == "cuda" and params["nthread"] == 2


def categorical_recipe() -> Recipe:
    doc = recipe().model_dump(mode="json", exclude_none=True)
    doc["features"]["views"]["v"]["fields"]["job"] = "string"
    return Recipe.model_validate(doc)


def test_a_string_feature_is_categorical_with_its_categories_frozen_from_the_training_rows(
        tmp_path: Path) -> None:
    jobs = np.array(["salaried", "contract", "self_employed", None] * 25, dtype=object)
    jobs[6] = "astronaut"  # one row only: wherever it lands, its split decides if it is a category
    splits = load_splits(dataset(tmp_path, job=jobs), categorical_recipe())
    cats = splits.categories["job"]
    assert splits.feature_names == ["f_a", "f_b", "job"] and splits.xgb_types == ["q", "q", "c"]
    assert cats == sorted(cats) and {"contract", "salaried", "self_employed"} <= set(cats)
    coded = np.concatenate([splits.x_train[:, 2], splits.x_val[:, 2], splits.x_test[:, 2]])
    # Codes index the frozen set; nulls (25 rows) and any category unseen in training are NaN.
    assert set(coded[~np.isnan(coded)]) <= set(map(float, range(len(cats))))
    assert int(np.isnan(coded).sum()) == 25 + ("astronaut" not in cats)


def test_a_string_column_declared_numeric_names_the_feature_and_the_fix(tmp_path: Path) -> None:
    path = dataset(tmp_path, f_a=np.array(["a", "b"] * 50, dtype=object))
    with pytest.raises(DataError, match="feature 'f_a' is declared numeric.*declare it 'string'"):
        load_splits(path, recipe())


def test_a_categorical_booster_trains_and_predicts_from_the_codes(tmp_path: Path) -> None:
    import xgboost as xgb

    from framework.backends.ray_train.backend import dmatrix

    jobs = np.array(["salaried", "contract"] * 50, dtype=object)
    path = dataset(tmp_path, job=jobs)
    frame = pd.read_parquet(path)
    frame["y"] = (frame["job"] == "salaried").astype(int)
    frame.to_parquet(path, index=False)
    splits = load_splits(path, categorical_recipe())
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2},
                        dmatrix(splits.x_train, splits, splits.y_train), 10)
    assert booster.feature_types == ["q", "q", "c"]
    pred = booster.predict(dmatrix(splits.x_test, splits))
    assert ((pred > 0.5) == (splits.y_test == 1)).all()
