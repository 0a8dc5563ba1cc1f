"""A recipe's data files: where they are and their content fingerprints (stdlib only)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framework.spec import Recipe

_CHUNK = 1 << 20


def source_file(recipe: "Recipe", project_dir: Path, name: str) -> Path:
    """Absolute path of source ``name``'s file (relative paths resolve against ``project_dir``)."""
    path = Path(recipe.data.sources[name].path).expanduser()
    return path if path.is_absolute() else Path(project_dir) / path


def fingerprint_sources(recipe: "Recipe", project_dir: Path) -> dict[str, str]:
    """``{source name: "sha256:<hex>"}`` of each source file's bytes; missing files are left out.

    Args:
        recipe: the validated recipe.
        project_dir: where relative source paths resolve.
    """
    out: dict[str, str] = {}
    for name in recipe.data.sources:
        path = source_file(recipe, project_dir, name)
        if path.is_file():
            out[name] = file_sha256(path)
    return out


def file_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
