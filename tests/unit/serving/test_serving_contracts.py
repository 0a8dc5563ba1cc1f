"""Each version answers in its own contract: categories frozen at training, its task and labels."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from framework.compile.contract import Contract
from framework.serving.metrics import NullMetrics
from framework.serving.predictor import Predictor
from framework.serving.problems import ApiError
from framework.serving.schemas import Instance
from framework.serving.scoring import predict_matrix
from framework.serving.settings import AppArgs

CATEGORIES = ["contract", "salaried", "self_employed"]
FEATURES = [{"name": "employment", "type": "string", "categories": CATEGORIES},
            {"name": "income", "type": "float64"}]


def _train(path, objective):
    import xgboost as xgb

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 3000).astype(np.float32)
    income = rng.normal(50, 10, 3000).astype(np.float32)
    # Only the category decides the label: salaried repays, the others mostly do not.
    y = (codes == 1).astype(np.float32)
    label = y if objective == "binary:logistic" else 1000 + 4000 * y
    dm = xgb.DMatrix(np.stack([codes, income], 1), label=label, feature_names=["employment", "income"],
                     feature_types=["c", "q"], enable_categorical=True)
    xgb.train({"objective": objective, "max_depth": 3}, dm, 15).save_model(str(path))
    return str(path)


class _Counting(NullMetrics):
    def __init__(self):
        self.unseen = []

    def unseen_category(self, feature):
        self.unseen.append(feature)


def _contract(task, major=1, labels=None):
    return Contract.model_validate({"major": major, "task": task, "features": FEATURES,
                                    "labels": labels}).model_dump(mode="json")


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    out = tmp_path_factory.mktemp("contracts")
    binary = _train(out / "v1.ubj", "binary:logistic")
    regression = _train(out / "v2.ubj", "reg:squarederror")
    args = AppArgs(model_id="loans", task="binary", feature_names=["employment", "income"],
                   feature_types={"employment": "string", "income": "float64"},
                   serving={"cache": {"enabled": False}, "fallback": [],
                            "missing_features": "model"})
    rng = random.Random(0)

    async def predict_fn(slot, vectors):
        return predict_matrix(slot, vectors, rng)

    metrics = _Counting()
    p = Predictor(args, None, predict_fn, metrics=metrics, seed=0)
    labels = {"threshold": 0.5, "positive": "will_repay", "negative": "will_default"}
    p.reconfigure({"slots": {
        "stable": {"version": "1", "model_path": binary,
                   "contract": _contract("binary", 1, labels)},
        "candidate": {"version": "2", "model_path": regression,
                      "contract": _contract("regression", 2)}},
        "candidate_weight": 0, "config_version": 1})
    return p, metrics


def _ask(p, pin=None, **features):
    return asyncio.run(p.predict([Instance(features=features)], pin=pin))[0]


def test_a_category_sent_as_a_string_is_coded_as_in_training(predictor):
    p, _ = predictor
    repays = _ask(p, employment="salaried", income=40.0)
    defaults = _ask(p, employment="contract", income=40.0)
    assert repays["prediction"] == "will_repay" and repays["probability"] > 0.9
    assert defaults["prediction"] == "will_default" and defaults["probability"] < 0.1


def test_an_unseen_category_reads_as_missing_and_is_counted(predictor):
    p, metrics = predictor
    before = len(metrics.unseen)
    unseen = _ask(p, employment="astronaut", income=40.0)
    missing = _ask(p, income=40.0)
    assert unseen["probability"] == pytest.approx(missing["probability"])
    assert metrics.unseen[before:] == ["employment"]


def test_each_version_answers_in_its_own_contract(predictor):
    p, _ = predictor
    stable = _ask(p, pin="1", employment="salaried", income=40.0)
    candidate = _ask(p, pin="2", employment="salaried", income=40.0)
    assert stable["prediction"] == "will_repay" and stable["contract"] == 1
    assert isinstance(candidate["prediction"], float) and candidate["probability"] is None
    assert candidate["prediction"] == pytest.approx(5000, rel=0.05) and candidate["contract"] == 2


def test_a_category_must_be_a_string_and_a_number_a_number(predictor):
    p, _ = predictor
    with pytest.raises(ApiError, match="Categorical features take a string.*employment"):
        _ask(p, employment=3, income=40.0)
    with pytest.raises(ApiError, match="finite numbers.*income"):
        _ask(p, employment="salaried", income="high")


def test_describe_shows_each_slots_contract(predictor):
    p, _ = predictor
    described = p.describe()
    assert described["stable"]["contract"]["task"] == "binary"
    assert described["candidate"]["contract"]["features"][0]["categories"] == CATEGORIES
