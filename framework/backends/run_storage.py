"""Where Ray Train and Tune keep a run's checkpoints and results: ``env.storage_path``.

A local directory on the embedded default (``<workspace>/ray_results``), a shared URI on a cluster
(``s3://...``: pyarrow's filesystems, which Ray Train uses too). A run's folder is removed when it
ends: the model goes to the MLflow registry, nothing reads the folder afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framework.spec import Recipe


def storage_path(recipe: "Recipe", workspace: Path | str) -> str:
    """``env.storage_path``, or the workspace's ``ray_results`` when it is empty."""
    return recipe.env.storage_path or str(Path(workspace).resolve() / "ray_results")


def is_uri(path: str) -> bool:
    return "://" in path


def remove_run(storage: str, name: str) -> None:
    """Delete a finished run's folder ``storage/name``; a failure leaves it (never fails the run)."""
    if not is_uri(storage):
        shutil.rmtree(Path(storage) / name, ignore_errors=True)
        return
    try:
        import pyarrow.fs

        fs, root = pyarrow.fs.FileSystem.from_uri(storage)
        fs.delete_dir(f"{root.rstrip('/')}/{name}")
    except Exception:  # noqa: BLE001 - nothing there, or no permission: a leftover, not an error
        pass
