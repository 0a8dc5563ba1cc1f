"""Ray Train and Tune keep a run's checkpoints in an S3-compatible object store (issue 17):
``env.storage_path: s3://bucket/prefix`` with ``env.storage_s3`` (endpoint, and credentials from
secret fields only), against a real S3 endpoint (moto's server). The workers write through the
pyarrow filesystem the driver built, the run's folder is removed when the run ends, and the
credentials never reach the workspace."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from training_helpers import run_steps, steps_of, with_training

pytestmark = pytest.mark.integration
KEY_ID, SECRET = "loom-test-key-id", "loom-test-secret-4f1a9c"


def _calls(log: Path, bucket: str) -> list[tuple[str, str]]:
    """``(method, path)`` of each request the server logged under ``/bucket``."""
    pattern = re.compile(r'"(GET|PUT|POST|DELETE|HEAD) (/' + re.escape(bucket) + r'[^ ?]*)')
    return [m.groups() for m in pattern.finditer(log.read_text(errors="replace"))]


def test_training_and_a_sweep_checkpoint_to_s3_through_secret_fields(
        ray_session, churn_dict, make_ctx, s3_server, monkeypatch):
    import pyarrow.fs

    from framework.backends.run_storage import s3_filesystem

    bucket = "loom-runs"
    urllib.request.urlopen(urllib.request.Request(f"{s3_server}/{bucket}", method="PUT"), timeout=10)
    monkeypatch.setenv("LOOM_TEST_S3_KEY_ID", KEY_ID)
    monkeypatch.setenv("LOOM_TEST_S3_SECRET", SECRET)
    tuning = {"search_space": {"max_depth": {"type": "choice", "values": [2, 4]}}, "num_samples": 2,
              "metric": "auc", "mode": "max", "scheduler": "fifo", "max_concurrent_trials": 1}
    data = with_training(churn_dict, tuning=tuning)
    data["training"]["model"]["num_boost_round"] = 10
    data["env"]["storage_path"] = f"s3://{bucket}/ray"
    data["env"]["storage_s3"] = {"endpoint_url": str(s3_server), "region": "us-east-1",
                                 "access_key_id": {"env": "LOOM_TEST_S3_KEY_ID"},
                                 "secret_access_key": {"env": "LOOM_TEST_S3_SECRET"}}
    ctx = make_ctx(data, workspace="ws_s3")
    run_steps(ctx, steps_of(ctx), ["training.tune", "training.train"])
    assert ctx.outputs["training.train"]["metrics"]["auc"] > 0.5

    calls = _calls(s3_server.log, bucket)
    written = [path for method, path in calls if method in ("PUT", "POST")]
    train_runs = {p.split("/")[3] for p in written if p.startswith(f"/{bucket}/ray/train-")}
    assert train_runs, calls[-20:]  # the Train run wrote under the prefix...
    assert any(p.endswith("/model.ubj") for p in written), written[-20:]  # ...its checkpoint too
    assert any(p.startswith(f"/{bucket}/ray/tune-") for p in written), written[-20:]  # and the sweep
    fs = s3_filesystem(ctx.recipe.env.storage_s3)
    left = fs.get_file_info(pyarrow.fs.FileSelector(f"{bucket}/ray", allow_not_found=True, recursive=True))
    assert [f.path for f in left if f.type == pyarrow.fs.FileType.File] == []  # runs removed at the end
    # The credentials were read at use; no file Loom wrote holds them.
    for path in Path(ctx.workspace).rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert SECRET.encode() not in path.read_bytes(), path
