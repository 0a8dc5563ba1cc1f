"""Data checks on real engines: the training run carries their results, and its row counts become
the baseline that blocks the next training when a source's size jumps."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

ARGS = ["recipe=churn", "training.model.num_boost_round=20"]
ROW_COUNT = "data.sources.customer_snapshots.checks.row_count.max_change"


def test_checks_reach_the_mlflow_run_and_guard_the_next_training(ray_session, project: Path,
                                                                   tmp_path: Path) -> None:
    from framework import api
    from framework.backends.model_registry.tracking import recipe_client
    from framework.errors import RecipeError
    from framework.state import WorkspaceState

    planned = api.plan(ARGS, until_kind="registry.register")
    api.apply(planned)
    ctx = planned.ctx
    run_id = ctx.outputs["training.train"]["run_id"]
    client = recipe_client(ctx.recipe, ctx.workspace)
    report = json.loads(Path(client.download_artifacts(run_id, "loom/data_checks.json", str(tmp_path)))
                        .read_text())
    assert report["statistics"] is False and report["failed"] == 0 and report["passed"] == 11
    assert report["sources"]["customer_snapshots"]["rows"] == 3000
    assert {r["rule"] for r in report["results"]} == {"not_null", "unique_key", "range", "allowed_values",
                                                      "freshness", "row_count"}
    metrics = client.get_run(run_id).data.metrics
    assert metrics["data_checks_passed"] == 11 and metrics["data_checks_failed"] == 0
    assert metrics["data_rows.customer_snapshots"] == 3000 and metrics["data_rows.churn_labels"] == 1000
    section = WorkspaceState(ctx.workspace).recipe("churn")
    assert section["data_checks"]["rows"] == {"customer_snapshots": 3000, "churn_labels": 1000}
    assert section["data_checks"]["run_id"] == run_id
    applied = {a: e["fingerprint"] for a, e in section["steps"].items()}

    # Twice the snapshots (an older copy of each month): +100% against the last training run.
    path = project / "data" / "churn" / "features.parquet"
    frame = pd.read_parquet(path)
    older = frame.assign(event_timestamp=frame["event_timestamp"] - pd.Timedelta(days=90),
                         created=frame["created"] - pd.Timedelta(days=90))
    pd.concat([older, frame], ignore_index=True).to_parquet(path, index=False)
    with pytest.raises(RecipeError) as info:
        api.plan(ARGS, until_kind="registry.register")
    (problem,) = info.value.problems
    assert problem.path == ROW_COUNT
    assert "6,000 rows against 3,000 at the last training run (+100%)" in problem.render()
    assert f"run once with {ROW_COUNT}=1.05" in problem.render()
    after = WorkspaceState(ctx.workspace).recipe("churn")
    assert {a: e["fingerprint"] for a, e in after["steps"].items()} == applied
    assert after["data_checks"] == section["data_checks"]

    # The hint's override lets the change through (planned only: training again is not the point).
    assert api.plan([*ARGS, f"{ROW_COUNT}=1.05"], until_kind="registry.register").preflighted
