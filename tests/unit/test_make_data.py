"""The sample data generator: fraud labels carry a learnable signal; churn data stays as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import make_data
import numpy as np
import pandas as pd
import pytest

#: Content hash of churn(1000 customers, seed 7): features then labels, dtypes and values.
#: Recorded before the fraud generator changed; churn's data must not move with it.
CHURN_1000_SEED_7 = "6ea7b7a8dec82193b8cab636af1612e47b3c6ceddac77cc7b20f4c9bb7a8865f"
#: The day 0 that hash was made with (the data is anchored to the day it is made).
T0 = pd.Timestamp("2026-01-01", tz="UTC")

FRAUD_DTYPES = {
    "account_id": "int64", "event_timestamp": "datetime64[ns, UTC]", "account_age_days": "int64",
    "txn_count_24h": "int64", "avg_amount_7d": "float64", "foreign_ratio": "float64",
    "chargebacks_90d": "int64",
}


def _content_hash(*frames: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for frame in frames:
        h.update(",".join(f"{c}:{t}" for c, t in frame.dtypes.items()).encode())
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _last_day(features: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Each account's newest snapshot (the one the day-3.5 label joins to) with its label."""
    last = features[features["event_timestamp"] == features["event_timestamp"].max()]
    return last.merge(labels[["account_id", "is_fraud"]], on="account_id", validate="one_to_one")


def test_churn_is_unchanged_for_the_default_seed() -> None:
    assert _content_hash(*make_data.churn(1000, np.random.default_rng(7), T0)) == CHURN_1000_SEED_7


def test_main_writes_the_same_churn_data(tmp_path: Path) -> None:
    today = (T0 + pd.Timedelta(days=make_data.CHURN_DAYS_BACK)).strftime("%Y-%m-%d")
    make_data.main(["--out", str(tmp_path), "--customers", "1000", "--accounts", "100",
                    "--today", today])
    frames = [pd.read_parquet(tmp_path / "churn" / f) for f in ("features.parquet", "labels.parquet")]
    assert _content_hash(*frames) == CHURN_1000_SEED_7


def test_fraud_shape_and_types() -> None:
    features, labels = make_data.fraud(1000, np.random.default_rng(7), T0)
    assert len(features) == 4000 and len(labels) == 1000
    assert dict(features.dtypes.astype(str)) == FRAUD_DTYPES
    assert labels["account_id"].tolist() == list(range(100_000, 101_000))
    assert sorted(features["event_timestamp"].unique()) == [
        T0 + pd.Timedelta(days=d) for d in range(4)]
    assert (labels["event_timestamp"] == T0 + pd.Timedelta(days=3, hours=12)).all()
    assert set(labels["is_fraud"].unique()) <= {0, 1} and labels["is_fraud"].dtype == "int64"
    assert features["foreign_ratio"].between(0, 1).all()


def test_fraud_is_deterministic_from_the_seed() -> None:
    a = make_data.fraud(500, np.random.default_rng(3))
    b = make_data.fraud(500, np.random.default_rng(3))
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])


@pytest.mark.parametrize("n", [1000, 5000])
def test_fraud_labels_carry_a_signal(n: int) -> None:
    rows = _last_day(*make_data.fraud(n, np.random.default_rng(7)))
    assert 0.03 <= rows["is_fraud"].mean() <= 0.08
    fraud, legit = rows[rows["is_fraud"] == 1], rows[rows["is_fraud"] == 0]
    assert fraud["chargebacks_90d"].mean() > 5 * legit["chargebacks_90d"].mean()
    assert fraud["txn_count_24h"].mean() > 2 * legit["txn_count_24h"].mean()
    assert fraud["foreign_ratio"].mean() > 2 * legit["foreign_ratio"].mean()
    assert fraud["avg_amount_7d"].median() > 1.5 * legit["avg_amount_7d"].median()


def test_the_newest_values_are_inside_each_example_views_ttl() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    now = pd.Timestamp.now(tz="UTC")
    for name, make in (("churn", make_data.churn), ("fraud", make_data.fraud)):
        features, labels = make(200, np.random.default_rng(7))
        recipe = yaml.safe_load((root / "recipes" / f"{name}.yaml").read_text())
        (ttl,) = {v["ttl_s"] for v in recipe["features"]["views"].values()}
        age_s = (now - features["event_timestamp"].max()).total_seconds()
        assert 0 < age_s < ttl, (name, age_s, ttl)
        assert labels["event_timestamp"].max() < now and labels["event_timestamp"].min() > (
            features["event_timestamp"].min())
