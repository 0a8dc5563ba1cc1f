"""Where Ray Train and Tune keep a run's checkpoints and results: ``env.storage_path``.

A local directory on the embedded default (``<workspace>/ray_results``), a shared URI on a cluster
(``s3://...``: pyarrow's filesystems, which Ray Train uses too). A run's folder is removed when it
ends: the model goes to the MLflow registry, nothing reads the folder afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framework.spec import Recipe


def storage_path(recipe: "Recipe", workspace: Path | str) -> str:
    """``env.storage_path``, or the workspace's ``ray_results`` when it is empty."""
    return recipe.env.storage_path or str(Path(workspace).resolve() / "ray_results")


def storage_target(recipe: "Recipe", workspace: Path | str) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for Ray Train's and Tune's ``RunConfig``.

    With ``env.storage_s3`` the filesystem is a pyarrow ``S3FileSystem`` built here from its
    endpoint and secret fields (read now, on the driver) and the path is ``bucket/prefix``: Ray
    ships the filesystem object to the workers, so no credential sits in an environment variable
    or a URI. Otherwise ``(storage_path(...), None)``: Ray resolves the path itself.

    Raises:
        BackendError: a credential cannot be read (names the key, never the value).
    """
    path = storage_path(recipe, workspace)
    s3 = recipe.env.storage_s3
    if s3 is None or not path.startswith("s3://"):
        return path, None
    return path.removeprefix("s3://"), s3_filesystem(s3)


def s3_filesystem(s3: Any) -> Any:
    """A pyarrow ``S3FileSystem`` for ``env.storage_s3``."""
    from urllib.parse import urlsplit

    import pyarrow.fs

    from framework.errors import BackendError

    options: dict[str, Any] = {}
    if s3.endpoint_url:
        url = urlsplit(s3.endpoint_url)
        options.update(endpoint_override=url.netloc + url.path.rstrip("/"), scheme=url.scheme)
    if s3.region:
        options["region"] = s3.region
    for key, ref, option in (("access_key_id", s3.access_key_id, "access_key"),
                             ("secret_access_key", s3.secret_access_key, "secret_key")):
        if ref is None:
            continue
        try:
            options[option] = ref.reveal()
        except (KeyError, OSError) as exc:
            raise BackendError(f"env.storage_s3.{key}: the {ref.where()} cannot be read "
                               f"({type(exc).__name__}). Set it, then run the command again.") from None
    return pyarrow.fs.S3FileSystem(**options)


def is_uri(path: str) -> bool:
    return "://" in path


def remove_run(storage: str, name: str, filesystem: Any = None) -> None:
    """Delete a finished run's folder ``storage/name`` (on ``filesystem`` when given); a failure
    leaves it (never fails the run)."""
    if filesystem is None and not is_uri(storage):
        shutil.rmtree(Path(storage) / name, ignore_errors=True)
        return
    try:
        import pyarrow.fs

        fs, root = (filesystem, storage) if filesystem is not None else \
            pyarrow.fs.FileSystem.from_uri(storage)
        fs.delete_dir(f"{root.rstrip('/')}/{name}")
    except Exception:  # noqa: BLE001 - nothing there, or no permission: a leftover, not an error
        pass
