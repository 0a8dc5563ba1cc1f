"""One contract for the training backends: FakeBackend and the real Ray Train/Tune and MLflow backends."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "training"))
from training_helpers import churn_dataset, compose_recipe_dict, steps_of  # noqa: E402

from framework.backends.base import RunContext  # noqa: E402
from framework.backends.fake import FakeBackend  # noqa: E402
from framework.spec import Recipe  # noqa: E402

ADDRESSES = ["training.tune", "training.train", "training.gates", "registry.register"]


@pytest.fixture
def tiny_ctx(tmp_path: Path, sample_data: Path) -> RunContext:
    """Churn with a sweep, 300 rows and 5 rounds, in a fresh workspace."""
    shutil.copytree(sample_data, tmp_path / "data")
    dataset = churn_dataset(tmp_path / "data", tmp_path / "dataset.parquet", rows=300)
    data = compose_recipe_dict("churn")
    data["training"]["model"].update(num_boost_round=5, early_stopping_rounds=2)
    data["training"]["gates"] = [{"metric": "auc", "min": 0.5}]
    data["training"]["tuning"] = {
        "search_space": {"max_depth": {"type": "choice", "values": [2, 3]}}, "num_samples": 2,
        "metric": "logloss", "mode": "min", "scheduler": "fifo", "max_concurrent_trials": 2,
    }
    return RunContext(recipe=Recipe.model_validate(data), project_dir=tmp_path,
                      workspace=tmp_path / "ws", outputs={"training.dataset": {"path": str(dataset)}})


def check_contract(pairs: list[tuple[Any, Any]], ctx: RunContext) -> None:
    """Unknown → None; apply → observe == fingerprint, JSON outputs; delete → observe None."""
    for backend, step in pairs:
        assert step.kind in backend.kinds
        assert backend.observe(step, ctx) is None, step.address
    for backend, step in pairs:
        ctx.outputs[step.address] = backend.apply(step, ctx)
        json.dumps(ctx.outputs[step.address])
        assert backend.observe(step, ctx) == step.fingerprint, step.address
    for backend, step in reversed(pairs):
        backend.delete(step.address, ctx)
        assert backend.observe(step, ctx) is None, step.address


def test_fake_backend_passes_the_training_contract(tiny_ctx: RunContext) -> None:
    fake = FakeBackend()
    steps = steps_of(tiny_ctx)
    check_contract([(fake, steps[a]) for a in ADDRESSES], tiny_ctx)


@pytest.mark.integration
def test_real_backends_pass_the_training_contract(ray_session, tiny_ctx: RunContext) -> None:
    from framework.backends.model_registry import MlflowRegistryBackend
    from framework.backends.ray_train import RayTrainBackend

    ray_side, registry = RayTrainBackend(), MlflowRegistryBackend()  # RayTrainBackend hands tune on
    backends = [ray_side, ray_side, registry, registry]
    steps = steps_of(tiny_ctx)
    check_contract([(b, steps[a]) for b, a in zip(backends, ADDRESSES)], tiny_ctx)
    out = tiny_ctx.outputs
    assert set(out["training.tune"]) >= {"best_params", "best_metric", "trials"}
    assert set(out["training.train"]) >= {"run_id", "model_path", "metrics", "best_iteration", "params",
                                          "feature_names", "rows"}
    assert out["training.gates"]["passed"] is True
    assert set(out["registry.register"]) >= {"model_name", "version", "model_uri", "run_id",
                                             "model_path", "alias"}
