"""`loom monitor evaluate`: joins, metrics and fairness on a synthetic log and labels; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.errors import DataError
from framework.monitor.evaluate import LabelSpec, evaluate, join, read_labels, truth_and_answers
from framework.monitor.metrics import auc, binary, logloss, regression
from framework.monitor.render import render_evaluate
from framework.spec.serving import LabelMapping

T0 = pd.Timestamp("2026-01-01T00:00:00Z")
LABELS = LabelMapping(threshold=0.5, positive="high_risk", negative="low_risk")


def log(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    score = rng.uniform(0, 1, n)
    return pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "time": [T0 + pd.Timedelta(hours=i * 0.1) for i in range(n)],
        "version": ["1" if i % 2 else "2" for i in range(n)],
        "degraded": False, "fallback": None,
        "customer_id": [str(i % 100) for i in range(n)],
        "region": ["north" if i % 4 < 2 else "south" for i in range(n)],
        "prediction": np.where(score >= 0.5, "high_risk", "low_risk"), "score": score})


def spec(path: Path, time_column: str | None = None) -> LabelSpec:
    return LabelSpec(path=path, column="churned", time_column=time_column,
                     time_candidates=("event_timestamp",))


def test_auc_and_logloss_known_values() -> None:
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([1, 1], [0.2, 0.3]) is None
    assert auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert logloss([1, 0], [0.9, 0.1]) == pytest.approx(-np.log(0.9))
    m = binary([1, 0, 1, 0], [1, 0, 0, 0], [0.9, 0.2, 0.4, 0.1])
    assert m["accuracy"] == 0.75 and m["positive_rate"] == 0.25 and m["label_rate"] == 0.5
    r = regression([1.0, 2.0, 3.0], [1.0, 3.0, 5.0])
    assert r["rmse"] == pytest.approx(np.sqrt(5 / 3)) and r["mae"] == pytest.approx(1.0)


def test_join_on_request_id_and_metrics_per_version_and_day(tmp_path: Path) -> None:
    frame = log()
    truth = (frame["score"] > 0.3).astype(int)  # answers right except for scores in (0.3, 0.5)
    labels = pd.DataFrame({"request_id": frame["request_id"], "churned": truth}).iloc[:300]
    path = tmp_path / "labels.parquet"
    labels.to_parquet(path)
    joined, info = join(frame, read_labels(spec(path)), spec(path), ["customer_id"])
    assert info["joined"] == 300 and info["unjoined"] == 100 and info["joined_on"] == "request_id"
    out = evaluate(truth_and_answers(joined, "binary", LABELS, path), "binary", None, 0.1)
    assert out["overall"]["rows"] == 300
    assert out["overall"]["auc"] == pytest.approx(1.0)
    wrong = ((joined["score"] > 0.3) & (joined["score"] < 0.5)).mean()
    assert out["overall"]["accuracy"] == pytest.approx(1 - wrong)
    assert set(out["versions"]) == {"1", "2"} and sum(v["rows"] for v in out["versions"].values()) == 300
    assert list(out["days"]) == ["2026-01-01", "2026-01-02"]  # 300 answers, 6 minutes apart


def test_a_request_of_several_instances_joins_on_its_entity_keys_too(tmp_path: Path) -> None:
    frame = log(4).assign(request_id=["a", "a", "b", "c"], customer_id=["1", "2", "3", "4"])
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": ["a", "a", "b"], "customer_id": [1, 2, 3], "churned": [1, 0, 1]}
                 ).to_parquet(path)
    joined, info = join(frame, read_labels(spec(path)), spec(path), ["customer_id"])
    assert info["joined_on"] == "request_id + customer_id" and info["joined"] == 3
    assert dict(zip(joined["customer_id"], joined["label"])) == {"1": 1, "2": 0, "3": 1}
    pd.DataFrame({"request_id": ["a", "b"], "churned": [1, 1]}).to_parquet(path)
    joined, info = join(frame, read_labels(spec(path)), spec(path), ["customer_id"])
    assert info["joined"] == 1 and info["ambiguous"] == 2 and info["unjoined"] == 3


def test_entity_join_takes_the_first_label_after_each_answer(tmp_path: Path) -> None:
    frame = log(4).assign(customer_id=["7", "7", "7", "8"])
    frame["time"] = frame["time"].astype("datetime64[us, UTC]")  # as read from the log's parquet
    labels = pd.DataFrame({"customer_id": [7, 7, 8], "churned": ["low_risk", "high_risk", 1],
                           "event_timestamp": [T0 + pd.Timedelta(minutes=3), T0 + pd.Timedelta(hours=1),
                                               T0 - pd.Timedelta(hours=1)]})
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    joined, info = join(frame, read_labels(spec(path)), spec(path), ["customer_id"])
    # answers at 0, 6 and 12 minutes: the first takes the label at 3 min, the others the one at 1 h;
    # customer 8's only label came before its answer, so it waits.
    assert info["time_column"] == "event_timestamp" and info["joined"] == 3 and info["unjoined"] == 1
    by_id = dict(zip(joined["request_id"], joined["label"]))
    assert by_id == {"r0": "low_risk", "r1": "high_risk", "r2": "high_risk"}


def test_entity_join_without_time_needs_one_label_per_entity(tmp_path: Path) -> None:
    frame = log(10)
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"customer_id": [1, 1], "churned": [0, 1]}).to_parquet(path)
    with pytest.raises(DataError, match=r"labels.parquet: 2 label rows share their customer_id"):
        join(frame, read_labels(spec(path)), spec(path), ["customer_id"])
    pd.DataFrame({"customer_id": [1.0, 2.0], "churned": [0, 1]}).to_parquet(path)
    joined, info = join(frame, read_labels(spec(path)), spec(path), ["customer_id"])
    assert info["joined"] == 2  # 1.0 matches the log's "1"


def test_fairness_gap_is_flagged(tmp_path: Path) -> None:
    frame = log()
    # north is always answered positive; south follows the score
    frame.loc[frame["region"] == "north", "prediction"] = "high_risk"
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": frame["request_id"], "churned": 1}).to_parquet(path)
    joined, _ = join(frame, read_labels(spec(path)), spec(path), ["customer_id"])
    out = evaluate(truth_and_answers(joined, "binary", LABELS, path), "binary", ["region"], 0.1)
    fair = out["fairness"]
    assert set(fair["groups"]) == {"region=north", "region=south"}
    assert fair["groups"]["region=north"]["positive_rate"] == 1.0
    gap = fair["gaps"]["positive_rate"]
    assert gap["flagged"] and gap["highest"] == "region=north" and gap["gap"] > 0.3
    assert fair["flagged"]
    text = render_evaluate({"model_id": "m", "labels": str(path), "label_column": "churned",
                            "log": {"directory": "d", "rows": 400, "window_s": None, "files": 1,
                                    "bytes": 10, "first": None},
                            "join": {"joined_on": "request_id", "label_rows": 400, "joined": 400,
                                     "log_rows": 400, "unjoined": 0}, **out})
    assert "largest positive_rate gap" in text and "FLAGGED" in text


def test_numeric_group_by_is_binned(tmp_path: Path) -> None:
    frame = log().assign(tenure=np.arange(400) % 60)
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": frame["request_id"], "churned": 0}).to_parquet(path)
    joined, _ = join(frame, read_labels(spec(path)), spec(path), [])
    out = evaluate(truth_and_answers(joined, "binary", LABELS, path), "binary", ["tenure"], 0.5)
    assert len(out["fairness"]["groups"]) == 5


def test_regression(tmp_path: Path) -> None:
    frame = log(50).assign(prediction=[str(float(i)) for i in range(50)], score=np.arange(50.0))
    path = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": frame["request_id"], "churned": np.arange(50.0) + 2}).to_csv(path)
    joined, _ = join(frame, read_labels(spec(path)), spec(path), [])
    out = evaluate(truth_and_answers(joined, "regression", None, path), "regression", ["region"], 0.1)
    assert out["overall"]["rmse"] == pytest.approx(2.0) and out["overall"]["mae"] == pytest.approx(2.0)
    assert out["fairness"]["gaps"] == {} and "regression" in out["fairness"]["note"]


@pytest.mark.parametrize("make,message", [
    (None, r"nope.parquet: no such labels file"),
    (lambda p: pd.DataFrame({"request_id": ["r1"], "label": [1]}).to_parquet(p),
     r"no label column 'churned' \(columns: request_id, label\).*--label-column"),
    (lambda p: pd.DataFrame({"user": ["a"], "churned": [1]}).to_parquet(p),
     r"no join keys: the labels have neither request_id nor the entity keys customer_id"),
    (lambda p: pd.DataFrame({"request_id": ["zzz"], "churned": [1]}).to_parquet(p),
     r"no label matched a logged answer \(10 logged answers, 1 labels, joined on request_id\)"),
    (lambda p: pd.DataFrame({"request_id": ["r1"], "churned": ["maybe"]}).to_parquet(p),
     r"1 labels are not 'low_risk' / 'high_risk'"),
], ids=["missing-file", "no-label-column", "no-join-keys", "empty-join", "bad-label"])
def test_bad_input_names_file_column_and_fix(tmp_path: Path, make, message) -> None:
    path = tmp_path / "nope.parquet"
    if make is not None:
        make(path)
    with pytest.raises(DataError, match=message):
        joined, _ = join(log(10), read_labels(spec(path)), spec(path), ["customer_id"])
        truth_and_answers(joined, "binary", LABELS, path)


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text("{}")
    with pytest.raises(DataError, match=r"labels must be parquet \(.parquet\) or CSV"):
        read_labels(spec(path))


def test_missing_time_column_given(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"customer_id": ["1"], "churned": [1]}).to_parquet(path)
    with pytest.raises(DataError, match="no time column 'seen_at'"):
        join(log(10), read_labels(spec(path, "seen_at")), spec(path, "seen_at"), ["customer_id"])


def test_multiclass_auc_and_logloss_from_the_logged_class_probabilities(tmp_path: Path) -> None:
    from framework.monitor.metrics import multiclass

    rng = np.random.default_rng(3)
    n = 300
    truth = rng.integers(0, 3, n)
    probs = rng.dirichlet([1, 1, 1], n)
    probs[np.arange(n), truth] += 1.0  # the right class usually has the highest probability
    probs /= probs.sum(1, keepdims=True)
    frame = log(n).assign(prediction=[str(int(p.argmax())) for p in probs],
                          probabilities=[list(p) for p in probs], score=probs.max(1))
    frame.loc[0, "probabilities"] = None  # a fallback's answer: no probabilities
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": frame["request_id"], "churned": truth}).to_parquet(path)
    joined, _ = join(frame, read_labels(spec(path)), spec(path), [])
    out = evaluate(truth_and_answers(joined, "multiclass", None, path), "multiclass", None, 0.1)
    overall = out["overall"]
    assert overall["rows"] == n and overall["accuracy"] == pytest.approx(
        (probs.argmax(1) == truth).mean())
    scored = slice(1, None)
    expected_loss = -np.log(probs[np.arange(n), truth][scored]).mean()
    assert overall["logloss"] == pytest.approx(expected_loss)
    by_class = [auc((truth[scored] == c).astype(int), probs[scored, c]) for c in range(3)]
    assert overall["auc"] == pytest.approx(np.mean(by_class)) and overall["auc"] > 0.8
    # Without logged probabilities (logs written before they were): accuracy only, said as null.
    alone = multiclass(["0", "1"], ["0", "0"])
    assert alone["accuracy"] == 0.5 and alone["auc"] is None and alone["logloss"] is None
