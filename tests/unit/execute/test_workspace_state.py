"""The one workspace state file: transactions, per-recipe sections, migration from older layouts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from framework.errors import StateError
from framework.execute.state import State
from framework.rollout.state import RolloutState, StateStore
from framework.state import FORMAT, WorkspaceState


def test_recipes_write_their_own_sections_and_never_each_others(tmp_path: Path) -> None:
    churn, fraud = State(tmp_path, "churn"), State(tmp_path, "fraud")
    churn.record("training.train", "training.train", "sha256:a", {"run_id": "1"})
    fraud.record("training.train", "training.train", "sha256:b", {"run_id": "2"})
    fraud.forget("training.train")
    doc = WorkspaceState(tmp_path).read()
    assert doc["format"] == FORMAT
    assert doc["recipes"]["churn"]["steps"]["training.train"]["fingerprint"] == "sha256:a"
    assert doc["recipes"]["fraud"]["steps"] == {}


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    # The rollout controller (another process in production) and an apply write the same file.
    def write(name: str) -> None:
        state = State(tmp_path, name)
        for i in range(20):
            state.record(f"step{i}", "feast.view", f"sha256:{i}", {})

    threads = [threading.Thread(target=write, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = WorkspaceState(tmp_path).read()
    assert {n: len(doc["recipes"][n]["steps"]) for n in "abc"} == {"a": 20, "b": 20, "c": 20}


def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    store = WorkspaceState(tmp_path)
    State(tmp_path, "churn").record("a", "feast.view", "sha256:1", {})
    before = store.path.read_text()
    with pytest.raises(RuntimeError):
        with store.transaction() as doc:
            doc["recipes"].clear()
            raise RuntimeError("crash mid-change")
    assert store.path.read_text() == before


def test_a_damaged_file_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(StateError, match="damaged.*loom plan recipe=NAME --refresh"):
        WorkspaceState(tmp_path).read()


def test_rollouts_live_in_the_same_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "churn")
    store.save(RolloutState(rollout_id="r1", model_id="churn", spec={}, stable={"version": "1"},
                            candidate={"version": "2"}, started_at=1.0))
    assert WorkspaceState(tmp_path).rollout("churn")["rollout_id"] == "r1"
    assert store.require().candidate_version == "2"
    assert StateStore(tmp_path, "fraud").load() is None


def test_older_layouts_are_migrated_once_into_one_file(tmp_path: Path) -> None:
    steps = {"training.dataset": {"kind": "training.dataset", "fingerprint": "sha256:d",
                                  "outputs": {"path": str(tmp_path / "datasets/churn-abc.parquet")},
                                  "applied_at": "2026-11-27T10:00:00Z"},
             "serving.deploy": {"kind": "serving.deploy", "fingerprint": "sha256:s", "outputs": {}}}
    (tmp_path / "state.json").write_text(json.dumps({"format": 1, "steps": steps}))
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "state.json").write_text(json.dumps(
        {"serving.deploy": {"fingerprint": "sha256:s", "version": "3"}}))
    rollout = tmp_path / "rollout" / "churn"
    rollout.mkdir(parents=True)
    (rollout / "state.json").write_text(json.dumps({"rollout_id": "r9", "model_id": "churn"}))
    (rollout / "steps.json").write_text(json.dumps({"rollout_id": "r9", "fingerprints": {"x": "y"}}))
    doc = WorkspaceState(tmp_path).read()
    churn = doc["recipes"]["churn"]
    assert churn["steps"] == steps
    assert churn["serving"]["serving.deploy"]["version"] == "3"
    assert churn["rollout_steps"]["rollout_id"] == "r9"
    assert doc["rollouts"]["churn"]["rollout_id"] == "r9"
    assert not (rollout / "state.json").exists() and (rollout / "state.json.migrated").exists()
    assert json.loads((tmp_path / "state.json").read_text())["format"] == FORMAT
    assert State(tmp_path, "churn").fingerprint("training.dataset") == "sha256:d"
