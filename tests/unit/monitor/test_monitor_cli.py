"""`loom monitor` through the CLI on a project with no engines: messages, exit codes, no traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from framework.cli import main
from framework.serving.predlog import PredictionLogWriter, log_dir


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _log(project: Path, n: int = 20) -> None:
    w = PredictionLogWriter(str(log_dir(project / ".loom", "churn")), "churn", "r", ["customer_id"],
                            ["tenure_months", "monthly_charges"], 1.0, 10**9, 3600)
    now = time.time()
    for i in range(n):
        w.record(request_id=f"q{i}", version="1", entities={"customer_id": f"C{i:06d}"},
                 features={"tenure_months": i, "monthly_charges": 20.0 + i}, prediction="low_risk",
                 score=0.2, degraded=False, fallback=None, at=now - 60 + i)
    w.close()


def test_no_log_yet(project: Path, capsys) -> None:
    code, out, err = _cli(capsys, "monitor", "recipe=churn")
    assert code == 0 and not err, err
    assert "No prediction log yet for model 'churn'" in out


def test_monitor_json_and_a_version_the_registry_lacks(project: Path, capsys) -> None:
    _log(project)
    code, out, err = _cli(capsys, "monitor", "recipe=churn", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["log"]["rows"] == 20 and report["versions"][0]["version"] == "1"
    assert "not in the registry" in report["versions"][0]["note"]
    assert "Freshness is not in the prediction log" in report["freshness"]


def test_evaluate_bad_input_is_a_message(project: Path, capsys) -> None:
    _log(project)
    code, _, err = _cli(capsys, "monitor", "evaluate", "recipe=churn")
    assert code == 1 and "needs --labels" in err
    bad = project / "labels.csv"
    pd.DataFrame({"user": ["x"], "churned": [1]}).to_csv(bad, index=False)
    code, _, err = _cli(capsys, "monitor", "evaluate", "recipe=churn", "--labels", "labels.csv")
    assert code == 1 and "labels.csv: no join keys" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "monitor", "recipe=churn", "--labels", "labels.csv")
    assert code == 1 and "belong to" in err


def test_evaluate_by_request_id(project: Path, capsys) -> None:
    _log(project)
    pd.DataFrame({"request_id": [f"q{i}" for i in range(10)], "churned": [0] * 10}).to_parquet(
        project / "labels.parquet")
    code, out, err = _cli(capsys, "monitor", "evaluate", "recipe=churn", "--labels", "labels.parquet")
    assert code == 0, err
    assert "Joined 10 of 20 logged answers; 10 have no label (yet)." in out
