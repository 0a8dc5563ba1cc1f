"""Churn trained end to end on real Ray and MLflow: registered, loadable, with lineage; fingerprint skip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from training_helpers import run_steps, steps_of, with_training

pytestmark = pytest.mark.integration

CHAIN = ["training.train", "training.gates", "registry.register"]


@pytest.fixture(scope="module")
def trained(ray_session, churn_dict, make_ctx):
    """Churn trained, gated and registered once for this module; (ctx, steps, progress lines)."""
    lines: list[str] = []
    ctx = make_ctx(churn_dict, workspace="ws_e2e", lines=lines)
    ctx.outputs["_recipe"] = {"fingerprint": "sha256:recipe-under-test", "yaml": "name: churn\n"}
    steps = steps_of(ctx, {"customer_snapshots": "sha256:a", "churn_labels": "sha256:b"})
    run_steps(ctx, steps, CHAIN)
    return ctx, steps, lines


def test_train_outputs_follow_the_contract(trained):
    ctx, _, _ = trained
    out = ctx.outputs["training.train"]
    assert Path(out["model_path"]).is_file() and out["model_path"].endswith(".ubj")
    assert set(out["metrics"]) == {"auc", "logloss", "accuracy", "f1", "precision", "recall"}
    assert out["metrics"]["auc"] > 0.7
    assert out["feature_names"] == ctx.recipe.feature_names()
    assert sum(out["rows"].values()) == ctx.outputs["training.dataset"]["rows"]
    assert out["params"]["nthread"] == 1 and out["params"]["max_depth"] == 4
    reg = ctx.outputs["registry.register"]
    assert reg["model_uri"] == f"models:/churn/{reg['version']}" and reg["alias"] == "candidate"


def test_registered_model_predicts_like_the_trained_booster(trained):
    import mlflow.xgboost
    import pandas as pd
    import xgboost

    ctx, _, _ = trained
    reg = ctx.outputs["registry.register"]
    local = xgboost.Booster(model_file=ctx.outputs["training.train"]["model_path"])
    loaded = mlflow.xgboost.load_model(reg["model_uri"])
    frame = pd.read_parquet(ctx.outputs["training.dataset"]["path"])[ctx.recipe.feature_names()]
    x = xgboost.DMatrix(frame.to_numpy(np.float32), feature_names=ctx.recipe.feature_names())
    np.testing.assert_array_equal(local.predict(x), loaded.predict(x))


def test_run_and_version_carry_the_lineage(trained):
    from framework.backends.model_registry.tracking import recipe_client

    ctx, steps, _ = trained
    client = recipe_client(ctx.recipe, ctx.workspace)
    run = client.get_run(ctx.outputs["training.train"]["run_id"])
    tags = run.data.tags
    assert tags["loom.recipe"] == "churn"
    assert tags["loom.recipe_fingerprint"] == "sha256:recipe-under-test"
    assert tags["loom.fingerprint"] == steps["training.train"].fingerprint
    assert tags["loom.feature_views"] == "customer_profile"
    assert tags["loom.data.customer_snapshots"].startswith("sha256:")
    assert tags["loom.data.churn_labels"].startswith("sha256:")
    assert tags["loom.code_version"].startswith("0.1.0")
    assert "validation_auc" in run.data.metrics and "test_auc" in run.data.metrics
    history = client.get_metric_history(run.info.run_id, "validation_auc")
    assert len(history) > 1  # one value per boosting round
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "loom")}
    assert {"loom/recipe.yaml", "loom/lineage.json", "loom/reference_profile.json"} <= artifacts


def test_model_is_ubj_with_a_signature(trained):
    from mlflow.models import get_model_info

    ctx, _, _ = trained
    info = get_model_info(ctx.outputs["registry.register"]["model_uri"])
    assert info.flavors["xgboost"]["model_format"] == "ubj"
    assert [c.name for c in info.signature.inputs.inputs] == ctx.recipe.feature_names()


def test_candidate_alias_set_and_champion_only_by_promote(trained):
    from framework.backends.model_registry import list_versions, promote, resolve_model, show_version
    from framework.backends.model_registry.tracking import tracking_uri

    ctx, _, _ = trained
    version = ctx.outputs["registry.register"]["version"]
    shown = show_version(ctx, "candidate")
    assert shown["version"] == version and shown["aliases"] == ["candidate"]
    assert shown["metrics"]["auc"] == pytest.approx(ctx.outputs["training.train"]["metrics"]["auc"])
    moved = promote(ctx, version)
    assert moved == {"model_name": "churn", "alias": "champion", "version": version, "previous": None}
    assert [v["aliases"] for v in list_versions(ctx)][0] == ["candidate", "champion"]
    resolved = resolve_model(tracking_uri(ctx.recipe, ctx.workspace), "churn", "champion")
    assert resolved["version"] == version and Path(resolved["model_path"]).name == "model.ubj"


def test_progress_lines_a_person_can_follow(trained):
    _, _, lines = trained
    text = "\n".join(lines)
    for expected in ("dataset: ", "training: 1 worker(s)", "trained: ", "test: auc", "gate ok",
                     "registered churn version"):
        assert expected in text
    assert len(lines) < 15


def test_same_fingerprint_observed_as_applied_and_changed_data_is_not(trained, make_ctx, churn_dict):
    from framework.backends.model_registry import MlflowRegistryBackend
    from framework.backends.ray_train import RayTrainBackend

    ctx, steps, _ = trained
    again = steps_of(ctx, {"customer_snapshots": "sha256:a", "churn_labels": "sha256:b"})
    for address, backend in (("training.train", RayTrainBackend()),
                             ("training.gates", MlflowRegistryBackend()),
                             ("registry.register", MlflowRegistryBackend())):
        assert backend.observe(again[address], ctx) == again[address].fingerprint
    changed = steps_of(ctx, {"customer_snapshots": "sha256:CHANGED", "churn_labels": "sha256:b"})
    observed = RayTrainBackend().observe(changed["training.train"], ctx)
    assert observed == steps["training.train"].fingerprint != changed["training.train"].fingerprint


def test_register_twice_with_the_same_fingerprint_reuses_the_version(trained):
    from framework.backends.model_registry import MlflowRegistryBackend, list_versions

    ctx, steps, _ = trained
    before = len(list_versions(ctx))
    out = MlflowRegistryBackend().apply(steps["registry.register"], ctx)
    assert out["version"] == ctx.outputs["registry.register"]["version"]
    assert len(list_versions(ctx)) == before


def test_failing_gate_names_metric_and_shortfall_and_registers_nothing(trained, make_ctx, churn_dict):
    from framework.backends.model_registry import MlflowRegistryBackend, list_versions
    from framework.errors import GateError

    ctx, _, _ = trained
    strict = with_training(churn_dict, gates=[{"metric": "auc", "min": 0.99},
                                              {"metric": "logloss", "max": 5}])
    gated = make_ctx(strict, workspace="ws_e2e")
    gated.outputs["training.train"] = ctx.outputs["training.train"]
    steps = steps_of(gated)
    before = list_versions(ctx)
    auc = ctx.outputs["training.train"]["metrics"]["auc"]
    with pytest.raises(GateError) as err:
        run_steps(gated, steps, ["training.gates", "registry.register"])
    message = str(err.value)
    assert f"auc = {auc:.4f}, below min 0.99 by {0.99 - auc:.4f}" in message
    assert "logloss" not in message  # that gate passed
    assert "nothing was registered" in message
    assert list_versions(ctx) == before
    assert "registry.register" not in gated.outputs
    gates = steps["training.gates"]
    assert MlflowRegistryBackend().observe(gates, gated) != gates.fingerprint


def test_apply_with_the_same_fingerprint_reuses_the_run_and_restores_the_model(trained):
    from framework.backends.ray_train import RayTrainBackend

    ctx, steps, _ = trained
    first = ctx.outputs["training.train"]
    saved = Path(first["model_path"]).read_bytes()
    Path(first["model_path"]).unlink()  # e.g. a fresh checkout: MLflow has it, the workspace not
    lines: list[str] = []
    ctx.progress = lines.append
    again = RayTrainBackend().apply(steps["training.train"], ctx)
    assert again["run_id"] == first["run_id"] and again["reused"] is True
    assert again["metrics"] == first["metrics"] and again["params"] == first["params"]
    assert Path(again["model_path"]).read_bytes() == saved
    assert lines == [f"training: reusing MLflow run {first['run_id']} (same data, features and config)"]
