"""Drift in the replica: rows counted in the bins of the version's training profile, the counters
and PSI gauges flushed off the request path, PSI near 0 for training-like traffic and large for
shifted traffic, misses and out-of-range values counted."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "serving"))
import serving_helpers as H  # noqa: E402

from framework.backends.model_registry.profile import psi, reference_profile  # noqa: E402
from framework.serving.drift import DriftMonitor, VersionBins  # noqa: E402
from framework.serving.features import InMemoryLookup  # noqa: E402
from framework.serving.metrics import NullMetrics  # noqa: E402
from framework.serving.predictor import Predictor  # noqa: E402
from framework.serving.schemas import Instance  # noqa: E402
from framework.serving.scoring import predict_matrix  # noqa: E402
from framework.serving.settings import AppArgs  # noqa: E402


class Recorded(NullMetrics):
    """The drift calls a replica makes, kept for the test to read."""

    def __init__(self) -> None:
        self.counts: dict[tuple, int] = {}
        self.gauges: dict[tuple, float] = {}

    def _add(self, key, n):
        self.counts[key] = self.counts.get(key, 0) + n

    def monitored_rows(self, version, n):
        self._add(("rows", version), n)

    def feature_bin(self, version, feature, bin_index, n):
        self._add(("bin", version, feature, bin_index), n)

    def feature_missing(self, version, feature, n):
        self._add(("missing", version, feature), n)

    def feature_out_of_range(self, version, feature, n):
        self._add(("outside", version, feature), n)

    def score_bin(self, version, bin_index, n):
        self._add(("score_bin", version, bin_index), n)

    def feature_psi(self, version, feature, value):
        self.gauges[("psi", version, feature)] = value

    def score_psi(self, version, value):
        self.gauges[("score_psi", version)] = value

    def feature_age(self, view, mean_s, max_s):
        self.gauges[("age", view)] = (mean_s, max_s)


def _profile(rng, n=2000):
    x = np.column_stack([rng.normal(0, 1, n), rng.uniform(0, 10, n)])
    return reference_profile(x, ["a", "b"], rng.uniform(0, 1, n)), x


def test_training_like_rows_have_a_small_psi_and_shifted_ones_a_large_one():
    rng = np.random.default_rng(0)
    profile, x = _profile(rng)
    same, shifted = VersionBins(profile, ["a", "b"]), VersionBins(profile, ["a", "b"])
    for row in rng.normal(0, 1, (1000, 1)):
        same.add([float(row[0]), float(rng.uniform(0, 10))], float(rng.uniform(0, 1)))
        shifted.add([float(row[0]) + 2.0, float(rng.uniform(0, 10))], float(rng.uniform(0.8, 1)))
    ref_a = profile["features"]["a"]["counts"]
    assert psi(ref_a, same.bins[0]) < 0.05
    assert psi(ref_a, shifted.bins[0]) > 1.0
    assert psi(profile["prediction"]["counts"], shifted.score_bins) > 1.0
    assert shifted.out_of_range[0] > 50 and same.out_of_range[0] < 5
    assert same.rows == shifted.rows == 1000 and sum(same.bins[0]) == 1000


def test_missing_values_are_counted_and_not_binned():
    profile, _ = _profile(np.random.default_rng(1))
    bins = VersionBins(profile, ["a", "b"])
    bins.add([math.nan, 5.0], None)
    bins.add([None, 5.0], 0.5)
    assert bins.missing == [2, 0] and sum(bins.bins[0]) == 0 and sum(bins.bins[1]) == 2
    assert sum(bins.score_bins) == 1


def test_flush_exports_only_what_is_new_and_psi_waits_for_min_rows(tmp_path):
    profile, x = _profile(np.random.default_rng(2))
    path = tmp_path / "reference_profile.json"
    path.write_text(json.dumps(profile))
    metrics = Recorded()
    mon = DriftMonitor(["a", "b"], {"sample_rate": 1.0, "window_s": 60, "min_rows": 50}, metrics,
                       start=False)
    mon.load("1", str(path))
    mon.observe("1", x[:30].tolist(), [0.5] * 30)
    first = mon.flush(now=1000.0)
    assert first["1"]["features"]["a"] is None and first["1"]["score"] is None  # 30 < min_rows
    assert math.isnan(metrics.gauges[("psi", "1", "a")])
    mon.observe("1", x[30:100].tolist(), [0.5] * 70)
    second = mon.flush(now=1010.0)
    assert metrics.counts[("rows", "1")] == 100  # each row counted once across flushes
    assert sum(n for k, n in metrics.counts.items() if k[:3] == ("bin", "1", "a")) == 100
    assert second["1"]["rows"] == 100 and second["1"]["features"]["a"] < 0.3
    assert metrics.gauges[("psi", "1", "a")] == second["1"]["features"]["a"]
    # The window forgets traffic older than window_s.
    assert mon.flush(now=1075.0)["1"]["rows"] == 0


def test_a_version_without_a_readable_profile_is_not_binned(tmp_path):
    mon = DriftMonitor(["a"], {}, Recorded(), start=False)
    mon.load("1", None)
    mon.load("2", str(tmp_path / "absent.json"))
    mon.observe("1", [[1.0]], [0.5])
    assert mon.flush() == {}


def test_the_sample_rate_bins_a_share_of_the_calls(tmp_path):
    profile, x = _profile(np.random.default_rng(3))
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    mon = DriftMonitor(["a", "b"], {"sample_rate": 0.25}, Recorded(), seed=0, start=False)
    mon.load("1", str(path))
    for row in x[:2000].tolist():
        mon.observe("1", [row], [0.5])
    assert 400 < mon._versions["1"].rows < 600


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_data):
    """A trained booster, its reference profile over real training rows, and those rows."""
    out = tmp_path_factory.mktemp("drift")
    model = H.train_booster(sample_data, out / "m1.ubj", rounds=5, seed=1)
    rows = H.latest_features(sample_data)
    x = rows[H.FEATURES].to_numpy(dtype=float)
    import xgboost

    booster = xgboost.Booster(model_file=str(model))
    pred = booster.inplace_predict(x.astype(np.float32))
    (out / "reference_profile.json").write_text(json.dumps(reference_profile(x, H.FEATURES, pred)))
    return model, out / "reference_profile.json", rows


def _predictor(served, metrics, drift=None):
    model, profile, rows = served
    base = H.compose_recipe().serving.model_dump(mode="json")
    args = AppArgs(model_id="churn", task="binary", feature_names=H.FEATURES,
                   entity_keys={"customer_id": "string"},
                   serving={**base, "cache": {"enabled": False}},
                   drift={"sample_rate": 1.0, "window_s": 600, "min_rows": 50, **(drift or {})})
    rng = random.Random(0)

    async def predict_fn(slot, vectors):
        return predict_matrix(slot, vectors, rng)

    p = Predictor(args, InMemoryLookup(["customer_id"], H.FEATURES, rows.to_dict(orient="records")),
                  predict_fn, metrics=metrics, seed=0)
    p.watch.drift._stop.set()  # the test flushes by hand
    p.reconfigure({"slots": {"stable": {"version": "1", "model_path": str(model),
                                        "model_uri": "models:/churn/1", "profile_path": str(profile)},
                             "candidate": None},
                   "candidate_weight": 0, "shadow_percent": 0, "config_version": 1})
    return p


def test_the_predictor_bins_what_it_answers_and_shifted_traffic_drifts(served):
    _, _, rows = served
    metrics = Recorded()
    p = _predictor(served, metrics)
    ids = rows["customer_id"].tolist()[:300]

    async def ask(features=None):
        for cid in ids:
            await p.predict([Instance(entities={"customer_id": cid}, features=features or {})])

    asyncio.run(ask())
    calm = p.watch.drift.flush()["1"]
    assert calm["rows"] == 300 and max(v for v in calm["features"].values() if v is not None) < 0.2
    asyncio.run(ask({"monthly_charges": 10_000.0}))  # every request now sends a value never seen
    drifted = p.watch.drift.flush()["1"]
    assert drifted["features"]["monthly_charges"] > 1.0
    assert metrics.counts[("outside", "1", "monthly_charges")] == 300
    assert metrics.counts[("rows", "1")] == 600


def test_the_predictor_logs_its_answers_with_the_request_id(served, tmp_path):
    import pandas as pd

    _, _, rows = served
    p = _predictor(served, Recorded())
    from framework.serving.watch import Watch

    args = p.args.model_copy(update={"prediction_log": {
        "directory": str(tmp_path / "log"), "sample_rate": 1.0, "max_bytes": 10_000_000,
        "flush_s": 60.0}})
    p.watch.close()
    p.watch = Watch(args, Recorded(), "replica-1")
    p.watch.versions(p.slots)
    ids = rows["customer_id"].tolist()[:20]

    async def ask():
        for n, cid in enumerate(ids):
            await p.predict([Instance(entities={"customer_id": cid})], request_id=f"r{n}")

    asyncio.run(ask())
    p.watch.close()
    log = pd.concat(pd.read_parquet(f) for f in (tmp_path / "log").rglob("*.parquet"))
    assert sorted(log["request_id"]) == sorted(f"r{n}" for n in range(20))
    assert set(log["customer_id"]) == set(ids) and set(log["version"]) == {"1"}
    first = log.set_index("request_id").loc["r0"]
    assert 0.0 <= first["score"] <= 1.0 and first["prediction"] in ("low_risk", "high_risk", "0", "1")
    assert first["monthly_charges"] == rows.set_index("customer_id").loc[ids[0], "monthly_charges"]


def test_a_categorical_feature_has_a_bin_per_category_so_a_shift_between_them_shows():
    # Before: decile edges over codes {0, 1} merged into one bin, so PSI was 0 whatever the mix.
    rng = np.random.default_rng(4)
    codes = rng.choice([0.0, 1.0], size=2000, p=[0.8, 0.2])
    profile = reference_profile(codes.reshape(-1, 1), ["plan"], rng.uniform(0, 1, 2000),
                                {"plan": 3})
    hist = profile["features"]["plan"]
    assert hist["edges"] == [-0.5, 0.5, 1.5, 2.5] and hist["counts"][2] == 0  # code 2 unseen in test
    bins = VersionBins(profile, ["plan"])
    for code in rng.choice([0.0, 1.0], size=1000, p=[0.2, 0.8]):
        bins.add([float(code)], 0.5)
    assert psi(hist["counts"], bins.bins[0]) > 0.5 and bins.out_of_range == [0]



def test_the_lookups_freshness_is_exported_on_the_drift_flush(served):
    class Aged(InMemoryLookup):
        blocking = False

        def take_ages(self):
            return {"customer_profile": (3, 120.0, 300.0)}

    model, profile, rows = served
    metrics = Recorded()
    base = H.compose_recipe().serving.model_dump(mode="json")
    args = AppArgs(model_id="churn", task="binary", feature_names=H.FEATURES,
                   entity_keys={"customer_id": "string"}, serving=base,
                   drift={"sample_rate": 1.0, "window_s": 600, "min_rows": 50})

    async def predict_fn(slot, vectors):
        return predict_matrix(slot, vectors, random.Random(0))

    lookup = Aged(["customer_id"], H.FEATURES, rows.to_dict(orient="records"))
    p = Predictor(args, lookup, predict_fn, metrics=metrics, seed=0)
    p.watch.drift._stop.set()
    p.watch.drift.flush()
    assert metrics.gauges[("age", "customer_profile")] == (120.0, 300.0)


def test_versions_of_different_contracts_are_binned_in_their_own_feature_order(tmp_path):
    # Before: the app's feature list binned every version; a version of another contract with
    # more features raised IndexError on the request path (a 500 for every request).
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (500, 3))
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(reference_profile(x, ["a", "b", "c"], rng.uniform(0, 1, 500))))
    mon = DriftMonitor(["a", "b"], {"min_rows": 1}, Recorded(), start=False)
    mon.load("2", str(path), ["c", "b", "a"])
    mon.observe("2", [[0.1, 0.2, 0.3]], [0.5])
    mon.observe("2", [[0.1, 0.2]], [0.5])  # a row of another shape is left out, never raised on
    report = mon.flush()["2"]
    assert report["rows"] == 1 and set(report["features"]) == {"a", "b", "c"}


def test_a_monitoring_failure_never_reaches_the_request(served):
    metrics = Recorded()
    p = _predictor(served, metrics)

    def broken(*args, **kwargs):
        raise RuntimeError("a defect in the drift monitor")

    p.watch.drift.observe = broken
    _, _, rows = served
    (ans,) = asyncio.run(p.predict([Instance(entities={"customer_id": rows["customer_id"].iloc[0]})]))
    assert ans["model_version"] == "1" and ans["degraded"] is False
