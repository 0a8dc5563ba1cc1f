"""`loom monitor` and `loom monitor evaluate` through the CLI on a launched recipe's prediction log."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import serving_helpers as H  # noqa: E402

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"
IDS = [f"C{i:06d}" for i in range(150)]


def _args(port: int) -> list[str]:
    return ["recipe=churn", "rollout=direct", f"serving.http.port={port}",
            "serving.num_cpus_per_replica=0.25", "training.model.num_boost_round=30",
            "++monitoring.log.sample_rate=1.0", "++monitoring.log.flush_s=1",
            "++monitoring.fairness={group_by:[contract_months],max_gap:0.5}"]


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from framework.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _wait_for_rows(directory: Path, n: int, timeout_s: float = 30.0) -> int:
    from framework.serving.predlog import parquet_files

    deadline, rows = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        files = parquet_files(directory)
        rows = sum(len(pd.read_parquet(p)) for _, _, p in files)
        if rows >= n:
            return rows
        time.sleep(0.5)
    return rows


def test_monitor_and_evaluate_read_the_served_log(ray_session, project, monkeypatch, capsys):
    from ray import serve

    from framework import api
    from framework.backends.ray_serve import traffic

    monkeypatch.setenv("LOOM_API_KEY", KEY)
    port = H.free_port()
    args = _args(port)
    code, _, err = _cli(capsys, "monitor", *args)
    assert code == 0 and not err, err  # nothing launched yet: a clear message, not an error
    planned = api.plan(args)
    try:
        api.apply(planned)
        url, version = planned.ctx.outputs["serving.deploy"]["url"], planned.ctx.outputs[
            "registry.register"]["version"]
        asked = {}
        for cid in IDS:
            status, _, body = H.call(url, {"entities": {"customer_id": cid}}, KEY)
            assert status == 200, body
            asked[body["request_id"]] = body
        log_dir = Path(planned.ctx.workspace) / "predictions" / "churn"
        assert _wait_for_rows(log_dir, len(IDS)) == len(IDS)

        # Drift: one version, every feature compared with its training profile.
        code, out, err = _cli(capsys, "monitor", *args, "--window", "1h", "--json")
        assert code == 0, err
        report = json.loads(out)
        (v,) = report["versions"]
        assert v["version"] == version and v["rows"] == len(IDS) and v["enough_rows"]
        recipe = planned.ctx.recipe
        assert [f["feature"] for f in v["features"]] == recipe.feature_names()
        assert all(f["psi"] is not None and f["missing"] == 0 for f in v["features"])
        assert v["score"]["psi"] is not None and v["score"]["rows"] == len(IDS)
        code, text, _ = _cli(capsys, "monitor", *args)
        assert code == 0 and f"version {version}: {len(IDS)} rows" in text and "(score)" in text

        # Delayed labels by entity: the sample data's labels, one per customer.
        labels = project / "data" / "churn" / "labels.parquet"
        code, out, err = _cli(capsys, "monitor", "evaluate", *args, "--labels", str(labels),
                              "--time-column", "none", "--json")
        assert code == 0, err
        ev = json.loads(out)
        assert ev["join"]["joined"] == len(IDS) and ev["join"]["unjoined"] == 0
        assert ev["overall"]["auc"] is not None and ev["versions"][version]["rows"] == len(IDS)
        assert ev["fairness"]["group_by"] == ["contract_months"] and ev["fairness"]["groups"]

        # By request id, from the answers the client got (a CSV).
        by_id = project / "labels_by_request.csv"
        pd.DataFrame({"request_id": list(asked), "churned": [
            1 if b["prediction"] == "high_risk" else 0 for b in asked.values()]}).to_csv(by_id, index=False)
        code, text, err = _cli(capsys, "monitor", "evaluate", *args, "--labels", str(by_id))
        assert code == 0, err
        assert f"Joined {len(IDS)} of {len(IDS)} logged answers" in text and "100.0%" in text

        # Labels older than every answer (their event_timestamp): nothing joins; a clear error.
        code, out, err = _cli(capsys, "monitor", "evaluate", *args, "--labels", str(labels))
        assert code == 1 and "no label matched a logged answer" in err and "Traceback" not in err
        code, _, err = _cli(capsys, "monitor", "evaluate", *args, "--labels", "nope.csv")
        assert code == 1 and "nope.csv: no such labels file" in err
    finally:
        traffic.delete_app("churn")
        serve.shutdown()
