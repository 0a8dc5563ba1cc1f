"""Content fingerprints of a recipe's data files (the only I/O a plan needs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from framework.errors import DataError
from framework.spec import Recipe

CHUNK = 1 << 20


def file_fingerprint(path: Path) -> str:
    """``sha256:<hex>`` of the file's bytes, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def data_fingerprints(recipe: Recipe, project_dir: Path) -> dict[str, str]:
    """Fingerprint of every data source's file, by source name.

    Raises:
        DataError: naming every missing file and the recipe key that points at it.
    """
    out, missing = {}, []
    for name, source in recipe.data.sources.items():
        path = Path(source.path).expanduser()
        path = path if path.is_absolute() else project_dir / path
        if path.is_file():
            out[name] = file_fingerprint(path)
        else:
            missing.append(f"  - data.sources.{name}.path: {source.path} does not exist "
                           f"(looked in {path.parent})")
    if missing:
        raise DataError("Data files are missing:\n" + "\n".join(missing)
                        + "\n    hint: make the sample data with `make data`, or fix the paths.")
    return out
