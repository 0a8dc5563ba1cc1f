"""`loom monitor`'s math on a synthetic log and profile: PSI, missing, out of range, flags."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.backends.model_registry.profile import bin_of, psi, reference_profile
from framework.compile.contract import Contract, ContractFeature
from framework.errors import DataError
from framework.backends.model_registry.profile import bins_of
from framework.monitor.drift import drift_report, encode
from framework.monitor.logread import parse_window, read_window
from framework.monitor.render import render_monitor
from framework.serving.predlog import PredictionLogWriter
from framework.spec.monitoring import Drift

NOW = 1_767_225_600.0
CONTRACT = Contract(task="binary", features=[
    ContractFeature(name="x", type="float64"),
    ContractFeature(name="plan", type="string", categories=["basic", "gold"])])


def profile(seed: int = 0, n: int = 5000) -> dict:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(0, 1, n), rng.integers(0, 2, n).astype(float)])
    return reference_profile(x, ["x", "plan"], rng.uniform(0, 1, n))


def write_log(directory: Path, rows: int, shift: float = 0.0, missing: float = 0.0,
              version: str = "2", plan=("basic", "gold"), t0: float = NOW - 600) -> None:
    rng = random.Random(1)
    w = PredictionLogWriter(str(directory), "m", "r", ["id"], ["x", "plan"], 1.0, 10**9, 3600, seed=1)
    for i in range(rows):
        x = None if rng.random() < missing else rng.gauss(shift, 1)
        w.record(request_id=f"q{i}", version=version, entities={"id": i},
                 features={"x": x, "plan": rng.choice(plan)}, prediction=1, score=rng.random(),
                 degraded=False, fallback=None, at=t0 + i * 0.01)
    w.close()


def report(directory: Path, window_s: float | None = 3600, **thresholds) -> dict:
    frame = read_window(directory, window_s, ["id"], ["x", "plan"], now=NOW).frame
    return drift_report(frame, {"2": (profile(), CONTRACT)}, ["x", "plan"], Drift(**thresholds))


def test_bins_of_matches_bin_of() -> None:
    edges = [-1.0, 0.0, 0.5, 2.0]
    values = [-3, -1, -0.5, 0, 0.2, 0.5, 1.9, 2.0, 2.5, 7]
    b, outside = bins_of(edges, values)
    assert [(int(i), bool(o)) for i, o in zip(b, outside)] == [bin_of(edges, v) for v in values]


def test_encode_uses_the_versions_categories() -> None:
    got = encode(pd.Series(["gold", None, "platinum", "basic"], dtype=object), ["basic", "gold"])
    assert got[0] == 1 and np.isnan(got[1]) and np.isnan(got[2]) and got[3] == 0
    nums = encode(pd.Series([1, "oops", None], dtype=object), None)
    assert nums[0] == 1 and np.isnan(nums[1]) and np.isnan(nums[2])


def test_same_distribution_is_quiet(tmp_path: Path) -> None:
    write_log(tmp_path, 2000)
    out = report(tmp_path)
    (v,) = out["versions"]
    assert v["rows"] == 2000 and not out["flagged"]
    x = next(f for f in v["features"] if f["feature"] == "x")
    assert x["psi"] < 0.05 and x["missing"] == 0 and x["out_of_range"] < 0.01
    assert v["score"]["psi"] < 0.05


def test_psi_equals_profile_psi_of_the_counts(tmp_path: Path) -> None:
    write_log(tmp_path, 500, shift=1.0)
    frame = read_window(tmp_path, None, ["id"], ["x", "plan"], now=NOW).frame
    hist = profile()["features"]["x"]
    counts = [0] * len(hist["counts"])
    for value in frame["x"]:
        counts[bin_of(hist["edges"], value)[0]] += 1
    x = next(f for f in report(tmp_path)["versions"][0]["features"] if f["feature"] == "x")
    assert x["psi"] == pytest.approx(psi(hist["counts"], counts))


def test_shift_missing_and_unseen_are_flagged(tmp_path: Path) -> None:
    write_log(tmp_path, 2000, shift=2.5, missing=0.2, plan=("gold", "platinum"))
    out = report(tmp_path)
    feats = {f["feature"]: f for f in out["versions"][0]["features"]}
    assert out["flagged"]
    assert set(feats["x"]["flags"]) == {"drift", "missing", "out_of_range"}
    assert feats["x"]["missing"] == pytest.approx(0.2, abs=0.03)
    assert feats["x"]["out_of_range"] > 0.1
    # an unseen category is missing to the model, as the replicas count it
    assert feats["plan"]["unseen"] == pytest.approx(0.5, abs=0.05)
    # (no PSI flag for it: the profile's decile edges of codes {0, 1} make a single bin)
    assert feats["plan"]["flags"] == ["missing"]
    text = render_monitor({"log": {"directory": str(tmp_path), "rows": 2000, "window_s": 3600,
                                   "files": 1, "bytes": 1000, "first": None}, "freshness": "f.",
                           **out})
    assert "version 2: 2,000 rows" in text and "drift, missing, out_of_range" in text
    assert "Drift flagged." in text


def test_few_rows_flag_nothing(tmp_path: Path) -> None:
    write_log(tmp_path, 50, shift=3.0)
    out = report(tmp_path, min_rows=100)
    assert not out["flagged"] and out["versions"][0]["enough_rows"] is False
    assert out["versions"][0]["features"][0]["psi"] > 1  # still shown


def test_window_keeps_recent_rows(tmp_path: Path) -> None:
    write_log(tmp_path / "a", 100, t0=NOW - 7200)
    write_log(tmp_path / "a", 100, t0=NOW - 60)
    assert len(read_window(tmp_path / "a", 600, ["id"], ["x", "plan"], now=NOW).frame) == 100
    assert len(read_window(tmp_path / "a", None, ["id"], ["x", "plan"], now=NOW).frame) == 200


def test_version_without_profile_says_so(tmp_path: Path) -> None:
    write_log(tmp_path, 10, version="1")
    frame = read_window(tmp_path, None, ["id"], ["x", "plan"], now=NOW).frame
    out = drift_report(frame, {}, ["x", "plan"], Drift())
    assert "no reference profile" in out["versions"][0]["note"]


@pytest.mark.parametrize("text,seconds", [("1h", 3600), ("30m", 1800), ("7d", 604800), ("90s", 90),
                                          ("all", None), (None, None), ("1.5h", 5400)])
def test_parse_window(text, seconds) -> None:
    assert parse_window(text) == seconds


def test_bad_window() -> None:
    with pytest.raises(DataError, match="A window is a number and a unit"):
        parse_window("yesterday")


def test_steady_state_drift_is_recorded_in_the_audit_log_when_it_changes(tmp_path: Path) -> None:
    from framework.monitor.audit import record_drift
    from framework.rollout.state import StateStore

    ws, logs = tmp_path / "ws", tmp_path / "log"
    write_log(logs / "a", 2000)
    quiet = report(logs / "a")
    assert record_drift(ws, "m", quiet, "rollback", now=NOW) == []  # nothing flagged, nothing before
    write_log(logs / "b", 2000, shift=2.5)
    drifted = report(logs / "b")
    (first,) = record_drift(ws, "m", drifted, "rollback", now=NOW + 1)
    assert first["event"] == "drift" and first["version"] == "2" and first["action"] == "rollback"
    assert first["flags"]["x"] == ["drift", "out_of_range"] and first["psi"]["x"] > 0.2
    assert "no rollout of it runs, so monitoring.on_drift (rollback) only records it" in first["reason"]
    assert record_drift(ws, "m", drifted, "rollback", now=NOW + 2) == []  # unchanged: no line
    (cleared,) = record_drift(ws, "m", quiet, "rollback", now=NOW + 3)
    assert cleared["flags"] == {} and "no feature or score is flagged any more" in cleared["reason"]
    assert [r["ts"] for r in StateStore(ws, "m").read_audit()] == [NOW + 1, NOW + 3]
    from framework.rollout.status import format_status, status

    write_log(logs / "c", 2000, shift=2.5)
    record_drift(ws, "m", report(logs / "c"), "alert", now=NOW + 4)
    shown = status(ws, "m")
    assert shown["status"] == "none" and shown["drift"][0]["version"] == "2"
    assert "drift     2026-01-01 00:00 UTC version 2: x (drift/out_of_range)" in format_status(shown)
