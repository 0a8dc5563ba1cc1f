"""A multiclass answer carries every class's probability, and the prediction log keeps them."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from framework.monitor.logread import read_window
from framework.serving.predictor import Predictor
from framework.serving.schemas import Instance
from framework.serving.scoring import predict_matrix
from framework.serving.settings import AppArgs


def test_multiclass_answers_and_their_log_records_hold_every_class(tmp_path):
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (600, 2)).astype(np.float32)
    y = np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.float32)  # three classes
    xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2},
              xgb.DMatrix(x, label=y), 10).save_model(str(tmp_path / "m.ubj"))
    args = AppArgs(model_id="m", task="multiclass", feature_names=["a", "b"],
                   feature_types={"a": "float64", "b": "float64"},
                   serving={"cache": {"enabled": False}, "fallback": []},
                   prediction_log={"directory": str(tmp_path / "log"), "sample_rate": 1.0,
                                   "max_bytes": 10**8, "flush_s": 3600})
    rng2 = random.Random(0)

    async def predict_fn(slot, vectors):
        return predict_matrix(slot, vectors, rng2)

    p = Predictor(args, None, predict_fn, seed=0)
    p.reconfigure({"slots": {"stable": {"version": "1", "model_path": str(tmp_path / "m.ubj")}},
                   "config_version": 1})
    answers = asyncio.run(p.predict([Instance(features={"a": v, "b": 0.0}) for v in (-2, 0, 2)],
                                    request_id="q1"))
    for ans, expected in zip(answers, (0, 1, 2)):
        assert ans["prediction"] == expected and len(ans["probabilities"]) == 3
        assert sum(ans["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert ans["probability"] == pytest.approx(max(ans["probabilities"]))
    p.watch.close()
    frame = read_window(tmp_path / "log", None, [], ["a", "b"]).frame
    logged = np.array([list(v) for v in frame["probabilities"]])
    assert logged == pytest.approx(np.array([a["probabilities"] for a in answers]))
