"""Batch inference pieces that need no engine: the input checks and the answers' labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.backends.batch import ROW_ID, answers, read_input
from framework.compile.contract import Contract
from framework.errors import DataError
from framework.loading.compose import load_recipe


@pytest.fixture
def fraud(project: Path):
    return load_recipe(["recipe=fraud"]).recipe  # account_id is an int64 key


def test_input_gets_row_ids_and_its_times_parsed(tmp_path: Path, fraud) -> None:
    path = tmp_path / "in.csv"
    pd.DataFrame({"account_id": [100001, 100002], "event_timestamp": ["2026-11-30", "2026-12-01"]}
                 ).to_csv(path, index=False)
    frame = read_input(path, fraud)
    assert frame[ROW_ID].tolist() == [0, 1]
    assert str(frame["event_timestamp"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize(("columns", "message"), [
    ({"customer": [1]}, "lacks join key column(s) ['account_id']"),
    ({"account_id": ["a"]}, "join key 'account_id' is int64"),
    ({"account_id": [1, 2], ROW_ID: [7, 7]}, "duplicate values"),
    ({"account_id": [1], "event_timestamp": ["yesterday-ish"]}, "is not a time"),
])
def test_a_bad_input_names_the_column_and_the_rule(tmp_path: Path, fraud, columns, message) -> None:
    path = tmp_path / "in.parquet"
    pd.DataFrame(columns).to_parquet(path, index=False)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        read_input(path, fraud)


def test_a_missing_input_says_where_to_give_one(tmp_path: Path, fraud) -> None:
    with pytest.raises(DataError, match="batch input not found"):
        read_input(tmp_path / "none.parquet", fraud)


def test_labels_are_the_apis(tmp_path: Path) -> None:
    features = [{"name": "x", "type": "float64"}]
    binary = Contract(task="binary", features=features,
                      labels={"threshold": 0.47, "positive": "fraud", "negative": "legit"})
    prediction, probability = answers(binary, np.array([0.5, 0.48, 0.1]), np.full(3, -1))
    assert prediction.tolist() == ["fraud", "fraud", "legit"]
    assert probability.dtype == np.float64
    multi = Contract(task="multiclass", num_class=3, features=features)
    prediction, probability = answers(multi, np.array([0.7, 0.6]), np.array([1, 0]))
    assert prediction.tolist() == [1, 0] and probability.tolist() == [0.7, 0.6]
    value, probability = answers(Contract(task="regression", features=features), np.array([3.5]),
                                 np.array([-1]))
    assert value.tolist() == [3.5] and np.isnan(probability).all()
