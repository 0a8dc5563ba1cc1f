"""Reference profiles and lineage: histograms drift checks can compare, fingerprints of data files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framework.backends.base import RunContext
from framework.backends.data_files import file_sha256
from framework.backends.model_registry.lineage import code_version, data_fingerprints
from framework.backends.model_registry.profile import histogram, reference_profile


def test_profile_has_a_histogram_per_feature_and_for_predictions() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=1000), rng.integers(0, 3, 1000)])
    prof = reference_profile(x, ["a", "b"], rng.random(1000))
    assert prof["rows"] == 1000 and set(prof["features"]) == {"a", "b"}
    for hist in [*prof["features"].values(), prof["prediction"]]:
        assert sum(hist["counts"]) == 1000
        assert len(hist["edges"]) == len(hist["counts"]) + 1
    assert len(prof["features"]["a"]["counts"]) == 10


def test_histogram_of_constant_and_missing_values() -> None:
    assert histogram(np.array([2.0, 2.0, np.nan]))["counts"] == [2]
    assert histogram(np.array([np.nan]))["missing"] == 1


def test_file_fingerprint_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    path.write_bytes(b"one")
    first = file_sha256(path)
    path.write_bytes(b"two")
    assert first.startswith("sha256:") and file_sha256(path) != first


def test_lineage_uses_the_plans_fingerprints_and_marks_missing_files(project: Path) -> None:
    from framework.loading import load_recipe

    recipe = load_recipe(["recipe=churn"]).recipe
    ctx = RunContext(recipe=recipe, project_dir=project, workspace=project / ".loom",
                     data_fingerprints={"churn_labels": "sha256:from-the-plan"})
    assert data_fingerprints(ctx) == {"churn_labels": "sha256:from-the-plan",
                                      "customer_snapshots": "missing"}


def test_code_version_starts_with_loom_version() -> None:
    assert code_version().startswith("0.1.0")
