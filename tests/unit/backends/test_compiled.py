"""Model optimization (issue 14): a registered XGBoost model compiled to native code (Treelite +
TL2cgen, real gcc), used only once its predictions equal XGBoost's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framework.backends import compiled
from framework.errors import BackendError
from framework.ops import render_optimize
from framework.serving.compiled import CompiledBooster, load_compiled

RNG = np.random.default_rng(7)
X = RNG.normal(size=(600, 4)).astype(np.float32)
X[::17, 2] = np.nan


def _booster(objective: str, **extra):
    import xgboost

    y = {"binary:logistic": (X[:, 0] + X[:, 1] > 0).astype(int),
         "multi:softprob": np.digitize(X[:, 0], [-0.5, 0.5]),
         "reg:squarederror": X[:, 0] * 2 + np.nan_to_num(X[:, 2])}[objective]
    booster = xgboost.train({"objective": objective, "max_depth": 4, **extra},
                            xgboost.DMatrix(X, label=y), 25)
    booster.set_param({"nthread": 1})
    return booster


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for name, objective, extra in (("binary", "binary:logistic", {}),
                                   ("multiclass", "multi:softprob", {"num_class": 3}),
                                   ("regression", "reg:squarederror", {})):
        booster = _booster(objective, **extra)
        d = tmp_path_factory.mktemp(name)
        booster.save_model(str(d / "model.ubj"))
        out[name] = (booster, compiled.compile_model(d / "model.ubj", d), d)
    return out


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_compiled_model_answers_what_xgboost_answers_in_its_shape(models, task):
    booster, lib, _ = models[task]
    fast = load_compiled(str(lib), booster)
    for rows in (X[:1], X[:32], X):
        want, got = booster.inplace_predict(rows), fast.inplace_predict(rows)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)
    names = [f"f{i}" for i in range(4)]
    assert compiled.check_equal(booster, fast, compiled.check_rows(None, names), "model") <= 1e-5


def test_a_library_that_predicts_differently_is_refused_with_the_row(models):
    booster, _, _ = models["binary"]
    other = _booster("binary:logistic", eta=0.9)
    d = models["binary"][2] / "other"
    other.save_model(str(d.parent / "other.ubj"))
    wrong = load_compiled(str(compiled.compile_model(d.parent / "other.ubj", d)), booster)
    with pytest.raises(BackendError, match=r"does not predict what XGBoost predicts.*largest "
                                           r"difference.*serving.predictor: xgboost"):
        compiled.check_equal(booster, wrong, compiled.check_rows(None, ["a", "b", "c", "d"]), "model")


def test_check_rows_sit_on_every_profile_edge_and_include_missing_values():
    profile = {"features": {"a": {"edges": [0.0, 1.5, 3.0]}, "b": {"edges": []}}}
    rows = compiled.check_rows(profile, ["a", "b"])
    assert rows.dtype == np.float32 and rows.shape[1] == 2
    assert {0.0, 1.5, 3.0} <= set(rows[:, 0].tolist()) and np.isnan(rows[:, 0]).any()
    assert (rows[:, 0] > 3.0).any() and (rows[:, 0] < 0.0).any()


def test_the_timing_table_and_what_optimize_prints(models):
    booster, lib, _ = models["binary"]
    table = compiled.timing_table(booster, load_compiled(str(lib), booster), ["a"] * 4, None,
                                  sizes=(1, 32), budget_s=0.02)
    assert [r["rows"] for r in table] == [1, 32]
    assert all(r["speedup"] == pytest.approx(r["xgboost_us_per_row"] / r["treelite_us_per_row"],
                                             rel=0.02) for r in table)
    text = render_optimize({"model": "m", "version": "3", "library": str(lib),
                                  "tolerance": 1e-5, "table": table,
                                  "auto_picks": {"online": "treelite", "batch": "xgboost"}})
    assert "m version 3" in text and "speed-up" in text and "treelite" in text


def test_a_versions_library_is_checked_logged_beside_its_model_and_reused(tmp_path, monkeypatch):
    import mlflow

    from framework.backends.model_registry.tracking import client_for
    from framework.backends.model_registry.versions import register_version, resolve_model

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)
    booster = _booster("binary:logistic")
    booster.save_model(str(tmp_path / "model.ubj"))
    exp = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifact(str(tmp_path / "model.ubj"), artifact_path="model")
    register_version(client, "m", f"{run.info.artifact_uri}/model", run.info.run_id, {})
    model = resolve_model(uri, "m", "1")
    lib = compiled.version_library(uri, model, tmp_path / "cache")
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "loom")}
    assert logged == {"loom/treelite-model.so", "loom/treelite-build.json"}
    assert json.loads((tmp_path / "cache" / compiled.BUILD_FILE).read_text()) == compiled.build_info()

    def no_compiler(*_a, **_k):
        raise AssertionError("compiled again")

    monkeypatch.setattr(compiled, "compile_model", no_compiler)
    assert compiled.version_library(uri, model, tmp_path / "cache") == lib  # the cached one
    elsewhere = compiled.version_library(uri, model, tmp_path / "other-node")  # from MLflow
    assert elsewhere.read_bytes() == lib.read_bytes()


def test_a_replica_slot_predicts_with_the_compiled_model(models):
    from framework.serving.control import SlotSpec
    from framework.serving.slots import SlotTable

    booster, lib, d = models["binary"]
    table = SlotTable(defaults=([f"f{i}" for i in range(4)], "binary", None))
    slot = table._slot(SlotSpec(version="1", model_path=str(d / "model.ubj"), compiled_path=str(lib)))
    assert isinstance(slot.booster, CompiledBooster)
    np.testing.assert_allclose(slot.booster.inplace_predict(X[:5]), booster.inplace_predict(X[:5]),
                               atol=1e-6)


def test_a_replica_loads_no_library_but_the_one_the_deploy_checked(models):
    from framework.serving.compiled import sha256_of
    from framework.serving.control import SlotSpec
    from framework.serving.slots import SlotTable

    booster, lib, d = models["binary"]
    table = SlotTable(defaults=([f"f{i}" for i in range(4)], "binary", None))
    good = SlotSpec(version="1", model_path=str(d / "model.ubj"), compiled_path=str(lib),
                    compiled_sha256=sha256_of(str(lib)))
    assert isinstance(table._slot(good).booster, CompiledBooster)
    swapped = good.model_copy(update={"version": "2", "compiled_sha256": "0" * 64})
    with pytest.raises(ValueError, match="not the compiled model the deploy step checked"):
        table._slot(swapped)


def test_changing_the_predictor_of_the_served_version_swaps_it_in_place():
    from framework.backends.ray_serve.backend import _next_user_config
    from framework.backends.ray_serve.config import initial_user_config

    model = {"version": "1", "model_path": "/m/model.ubj", "model_uri": "models:/m/1"}
    current = initial_user_config(model)
    assert _next_user_config(current, model) is current
    swapped = _next_user_config(current, {**model, "compiled_path": "/m/treelite-model.so",
                                          "compiled_sha256": "a" * 64})
    assert swapped["slots"]["stable"]["compiled_path"] == "/m/treelite-model.so"
    assert swapped["slots"]["stable"]["compiled_sha256"] == "a" * 64
    assert swapped["config_version"] == current["config_version"] + 1
    back = _next_user_config(swapped, model)
    assert "compiled_path" not in back["slots"]["stable"]


def _ctx(tmp_path, model_dir, **recipe):
    from types import SimpleNamespace

    lines: list[str] = []
    batch = SimpleNamespace(predictor=recipe.get("batch", "xgboost"), batch_size=recipe.get("rows", 5000))
    serving = SimpleNamespace(predictor=recipe.get("serving", "xgboost"))
    ctx = SimpleNamespace(recipe=SimpleNamespace(batch=batch, serving=serving), workspace=tmp_path,
                          progress=lines.append)
    model = {"version": "3", "model_path": str(model_dir / "model.ubj"), "profile_path": None}
    return ctx, model, lines


@pytest.mark.parametrize("asked", ["xgboost", "treelite", "auto"])
def test_a_batch_job_picks_its_predictor_by_its_own_batch_size(models, tmp_path, monkeypatch, asked):
    # batch.predictor is the batch path's own choice: auto times the job's rows per call, not one.
    _, lib, d = models["binary"]
    monkeypatch.setattr(compiled, "version_library", lambda uri, model, cache: lib)
    monkeypatch.setattr("framework.backends.model_registry.tracking.tracking_uri", lambda r, w: "x")
    ctx, model, lines = _ctx(tmp_path, d, batch=asked, rows=5000)
    chosen, info = compiled.for_batch(ctx, model)
    assert info["asked"] == asked
    if asked == "xgboost":
        assert chosen is model and info == {"name": "xgboost", "asked": "xgboost"}
        return
    if asked == "auto":
        assert info["timing"]["rows"] == 5000 and "one_row_us" not in info
        assert info["name"] == ("treelite" if info["timing"]["speedup"] > 1 else "xgboost")
        assert lines[-1].startswith("batch.predictor auto: 5,000 row(s) per call")
    if info["name"] == "treelite":
        assert chosen["compiled_path"] == str(lib) and len(chosen["compiled_sha256"]) == 64
    online, online_info = compiled.for_deploy(_ctx(tmp_path, d, serving="auto")[0], model)
    assert online_info["one_row_us"]["rows"] == 1  # the online path times one row per call


def test_a_batch_scorer_with_the_library_answers_what_xgboost_answers(models):
    import pandas as pd

    from framework.backends.batch import _POS, _Scorer, scorer_args
    from framework.serving.compiled import sha256_of

    _, lib, d = models["multiclass"]
    batch = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)]).assign(**{_POS: range(len(X))})
    model = {"model_path": str(d / "model.ubj")}
    plain_args = scorer_args(model, True)
    assert isinstance(plain_args[0], bytes) and plain_args[2] is None  # bytes, not driver paths
    plain = _Scorer(*plain_args)(batch)
    fast = _Scorer(*scorer_args({**model, "compiled_path": str(lib),
                                 "compiled_sha256": sha256_of(str(lib))}, True))(batch)
    np.testing.assert_allclose(fast["score"], plain["score"], atol=1e-5)
    assert fast["klass"].tolist() == plain["klass"].tolist()
    with pytest.raises(ValueError, match="sha256 differs"):
        _Scorer(*scorer_args({**model, "compiled_path": str(lib), "compiled_sha256": "0" * 64}, True))
