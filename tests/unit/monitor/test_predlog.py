"""The prediction log writer: sampling, schema, flush thread, bounded size, failures swallowed."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from framework.serving.predlog import PredictionLogWriter, column_names, log_dir, parquet_files

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def writer(directory: Path, **kw) -> PredictionLogWriter:
    args = dict(model_id="churn", replica="churn#Ingress#abc/1", entity_keys=["customer_id"],
                feature_names=["tenure", "plan", "score"], sample_rate=1.0, max_bytes=10**9,
                flush_s=3600, seed=7)
    args.update(kw)
    return PredictionLogWriter(str(directory), **args)


def rec(w: PredictionLogWriter, i: int, at: float = T0, **kw) -> None:
    args = dict(request_id=f"r{i}", version="3", entities={"customer_id": i},
                features={"tenure": i * 1.5, "plan": "gold" if i % 2 else "basic", "score": None},
                prediction=i % 2, score=0.25, degraded=False, fallback=None, at=at + i)
    args.update(kw)
    w.record(**args)


def read_all(directory: Path):
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(p) for _, _, p in parquet_files(directory)],
                            promote_options="permissive")


def test_schema_and_partition(tmp_path: Path) -> None:
    w = writer(tmp_path)
    for i in range(5):
        rec(w, i)
    rec(w, 5, degraded=True, fallback="default", version=None, score=None,
        features={"tenure": None, "plan": None, "score": 2})
    w.close()
    files = parquet_files(tmp_path)
    assert len(files) == 1
    path = files[0][2]
    assert path.parent.name == "date=2026-01-01"
    assert "#" not in path.name and "/" not in path.name
    t = read_all(tmp_path)
    assert t.column_names == ["request_id", "time", "model_id", "version", "degraded", "fallback",
                              "customer_id", "tenure", "plan", "feature.score", "prediction", "score",
                              "probabilities"]
    assert str(t.schema.field("probabilities").type) == "list<element: double>"
    assert str(t.schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert str(t.schema.field("tenure").type) == "double"
    assert str(t.schema.field("plan").type) == "string"
    assert str(t.schema.field("customer_id").type) == "int64"
    rows = t.to_pylist()
    assert rows[0]["request_id"] == "r0" and rows[0]["prediction"] == "0" and rows[0]["score"] == 0.25
    assert rows[5]["degraded"] is True and rows[5]["fallback"] == "default"
    assert rows[5]["version"] is None and rows[5]["score"] is None and rows[5]["tenure"] is None
    assert rows[3]["time"].timestamp() == T0 + 3
    assert w.written == 6 and w.dropped == 0


def test_column_names_avoid_reserved() -> None:
    ent, feat = column_names(["time", "id"], ["id", "x", "prediction"])
    assert ent == {"time": "entity.time", "id": "id"}
    assert feat == {"id": "feature.id", "x": "x", "prediction": "feature.prediction"}


def test_sampling_rate_is_honoured(tmp_path: Path) -> None:
    w = writer(tmp_path, sample_rate=0.1, seed=1)
    for i in range(20_000):
        rec(w, i)
    kept = len(w._buffer)
    w.close()
    assert 1_700 < kept < 2_300
    none = writer(tmp_path / "none", sample_rate=0.0)
    for i in range(100):
        rec(none, i)
    none.close()
    assert parquet_files(tmp_path / "none") == []


def test_flush_thread_writes_without_being_asked(tmp_path: Path) -> None:
    w = writer(tmp_path, flush_s=0.05)
    rec(w, 1)
    deadline = time.monotonic() + 5
    while not parquet_files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(parquet_files(tmp_path)) == 1
    w.close()
    assert not w._thread.is_alive()


def test_rows_split_by_day(tmp_path: Path) -> None:
    w = writer(tmp_path)
    rec(w, 0, at=T0 - 10)
    rec(w, 1, at=T0)
    w.close()
    assert sorted(p.parent.name for _, _, p in parquet_files(tmp_path)) == ["date=2025-12-31",
                                                                          "date=2026-01-01"]


def test_log_stays_under_max_bytes_across_replicas(tmp_path: Path) -> None:
    a = writer(tmp_path, replica="a")
    b = writer(tmp_path, replica="b")
    for i in range(8):
        rec(a, i)
        a.flush()
        rec(b, i)
        b.flush()
    size = parquet_files(tmp_path)[0][1]
    a.max_bytes = b.max_bytes = int(size * 4.5)
    rec(a, 99)
    a.flush()
    files = parquet_files(tmp_path)
    assert sum(s for _, s, _ in files) <= a.max_bytes
    assert len(files) == 4
    assert any(p.name.startswith("a-") for _, _, p in files)  # the newest file stays
    a.close()
    b.close()


def test_write_failure_is_logged_and_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    w = writer(blocker / "log")  # mkdir under a file fails
    with caplog.at_level(logging.WARNING, logger="framework.serving.predlog"):
        rec(w, 1)
        w.flush()
        rec(w, 2)
        w.flush()
    assert w.dropped == 2 and w.written == 0
    assert sum("could not write" in r.message for r in caplog.records) == 1  # once per outage
    w.close()


def test_record_never_raises(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.record(request_id="x", version="1", entities=None, features={}, prediction=None,  # type: ignore[arg-type]
             score="nan?", degraded=False, fallback=None, at=T0)
    rec(w, 1, features={"tenure": object(), "plan": 3, "score": 1.5}, score="bad")
    w.close()
    assert w.written == 1 and w.dropped == 1
    row = read_all(tmp_path).to_pylist()[0]
    assert row["score"] is None and row["plan"] == 3


def test_log_dir() -> None:
    assert log_dir("/ws", "fraud/v2") == Path("/ws/predictions/fraud_v2")
    assert os.fspath(log_dir("/ws", "churn")).endswith("predictions/churn")


def test_typed_columns_read_back_as_one_dataset(tmp_path: Path) -> None:
    # Before: each flush inferred its own types (int64 in one file, double in the next), and
    # pd.read_parquet of the log's folder failed ("Float value 1.5 was truncated").
    import pandas as pd

    w = writer(tmp_path, feature_types={"tenure": "int64", "plan": "string", "score": "float64"})
    rec(w, 0, features={"tenure": 2, "plan": "gold", "score": 1}, entities={"customer_id": 7})
    w.flush()
    rec(w, 1, features={"tenure": 1.5, "plan": "basic", "score": None}, entities={"customer_id": "C1"})
    w.close()
    frame = pd.read_parquet(tmp_path)
    assert sorted(frame["tenure"]) == [1.5, 2.0] and set(frame["plan"]) == {"gold", "basic"}
    assert set(frame["customer_id"]) == {"7", "C1"}
