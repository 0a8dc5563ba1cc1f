"""Content fingerprints of a recipe's data files (the only I/O a plan needs)."""

from __future__ import annotations

from pathlib import Path

from framework.backends.data_files import fingerprint_sources, source_file
from framework.errors import DataError
from framework.spec import Recipe


def data_fingerprints(recipe: Recipe, project_dir: Path) -> dict[str, str]:
    """Fingerprint of every data source's file, by source name.

    Raises:
        DataError: naming every missing file and the recipe key that points at it.
    """
    found = fingerprint_sources(recipe, project_dir)
    missing = [
        f"  - data.sources.{name}.path: {source.path} does not exist "
        f"(looked in {source_file(recipe, project_dir, name).parent})"
        for name, source in recipe.data.sources.items()
        if name not in found
    ]
    if missing:
        raise DataError("Data files are missing:\n" + "\n".join(missing)
                        + "\n    hint: make the sample data with `make data`, or fix the paths.")
    return found
