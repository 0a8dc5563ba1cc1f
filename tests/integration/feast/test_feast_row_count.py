"""100k label rows in, 100k training rows out: duplicates kept, nothing dropped, values exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from framework.backends.feast import FeastBackend

from feast_helpers import T0, apply_all, recipe_dict

pytestmark = pytest.mark.integration

N_LABELS, N_CUSTOMERS = 100_000, 20_000


def write_big_tables(root) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    (root / "data").mkdir()
    ids = np.arange(N_CUSTOMERS, dtype="int64")
    feats = pd.concat([pd.DataFrame({
        "customer_id": ids,
        "event_timestamp": T0 + pd.Timedelta(days=10 * k),
        "spend": rng.uniform(0, 100, N_CUSTOMERS).round(2),
        "visits": rng.integers(0, 50, N_CUSTOMERS),
    }) for k in range(3)], ignore_index=True)
    feats.to_parquet(root / "data/features.parquet", index=False)
    # keys include 5% never seen; times start before the first snapshot (no value yet)
    labels = pd.DataFrame({
        "customer_id": rng.integers(0, int(N_CUSTOMERS * 1.05), N_LABELS),
        "event_timestamp": T0 + pd.to_timedelta(rng.integers(-86_400, 35 * 86_400, N_LABELS), unit="s"),
        "bought": rng.integers(0, 2, N_LABELS),
    })
    labels.iloc[N_LABELS // 2:N_LABELS // 2 + 10_000, :2] = labels.iloc[:10_000, :2].to_numpy()
    labels["customer_id"] = labels["customer_id"].astype("int64")
    labels["event_timestamp"] = pd.to_datetime(labels["event_timestamp"], utc=True)
    labels.to_parquet(root / "data/labels.parquet", index=False)
    return feats, labels


def expected(feats: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    left = labels.reset_index().sort_values("event_timestamp")
    right = feats.sort_values("event_timestamp")
    merged = pd.merge_asof(left, right, on="event_timestamp", by="customer_id", direction="backward")
    return merged.sort_values("index").reset_index(drop=True)


def test_every_label_row_comes_out_exactly_once(tmp_path, feast_project):
    feats, labels = write_big_tables(tmp_path)
    assert labels.duplicated(["customer_id", "event_timestamp"]).sum() >= 10_000
    recipe, ctx = feast_project(recipe_dict())
    out = apply_all(FeastBackend(), recipe, ctx)["training.dataset"]

    got = pd.read_parquet(out["path"])
    assert out["rows"] == len(got) == N_LABELS
    assert got["customer_id"].tolist() == labels["customer_id"].tolist()
    assert got["bought"].tolist() == labels["bought"].tolist()
    want = expected(feats, labels)
    assert got["spend"].isna().tolist() == want["spend"].isna().tolist()
    assert np.allclose(got["spend"].fillna(-1), want["spend"].fillna(-1))
    assert np.array_equal(got["visits"].fillna(-1).to_numpy(), want["visits"].fillna(-1).to_numpy())
