"""Source checks for a recipe's data files (pyarrow at most; no feast import); fingerprints re-exported."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.backends.data_files import file_sha256, fingerprint_sources, source_file
from framework.errors import DataError, Problem

__all__ = ["check_sources", "file_sha256", "fingerprint_sources", "parquet_source", "raise_for_sources",
           "source_file"]

if TYPE_CHECKING:
    from framework.spec import Recipe

#: Arrow type predicates each declared value type accepts (widening only, never lossy).
_FITS = {
    "string": ("is_string", "is_large_string"),
    "int32": ("is_int8", "is_int16", "is_int32", "is_uint8", "is_uint16"),
    "int64": ("is_int8", "is_int16", "is_int32", "is_int64", "is_uint8", "is_uint16", "is_uint32"),
    "float32": ("is_floating", "is_integer"),
    "float64": ("is_floating", "is_integer"),
    "bool": ("is_boolean",),
}


def parquet_source(recipe: "Recipe", project_dir: Path, workspace: Path, name: str) -> Path:
    """The parquet file Feast reads for source ``name``: the file itself, or a CSV converted once.

    Feast's file sources read parquet only; a CSV source is converted into
    ``<workspace>/feast/data/<name>.parquet`` and converted again when the CSV's bytes change.
    """
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = source_file(recipe, project_dir, name)
    if recipe.data.sources[name].type == "parquet":
        return path
    out = Path(workspace) / "feast" / "data" / f"{name}.parquet"
    stamp = out.with_suffix(".sha256")
    digest = file_sha256(path)
    if not (out.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == digest):
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pcsv.read_csv(path), out)
        stamp.write_text(digest, encoding="utf-8")
    return out


def read_schema(path: Path, fmt: str) -> Any:
    """The Arrow schema of a parquet or CSV file (CSV types inferred from its first block)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.read_schema(path)
    with pcsv.open_csv(path) as reader:
        return reader.schema


def check_sources(recipe: "Recipe", project_dir: Path) -> list[Problem]:
    """Every problem with the recipe's source files, before anything is applied.

    Checks that each file exists and reads, timestamp columns are timestamps, and that feature
    fields, entity join keys and the label column exist with types that fit the declared ones.

    Args:
        recipe: the validated recipe.
        project_dir: where relative source paths resolve.

    Returns:
        One ``Problem`` per failure, each naming the recipe key and the file; empty when all is well.
    """
    problems: list[Problem] = []
    schemas: dict[str, Any] = {}
    for name, src in recipe.data.sources.items():
        schema = _source_schema(recipe, project_dir, name, problems)
        if schema is None:
            continue
        schemas[name] = schema
        path = source_file(recipe, project_dir, name)
        for key, col in (("timestamp_field", src.timestamp_field),
                         ("created_timestamp_field", src.created_timestamp_field)):
            if col is not None:
                problems += _check_timestamp(schema, col, f"data.sources.{name}.{key}", path)
    problems += _check_views(recipe, project_dir, schemas)
    problems += _check_label(recipe, project_dir, schemas)
    return problems


def raise_for_sources(recipe: "Recipe", project_dir: Path) -> None:
    """Raise ``DataError`` listing every source problem; do nothing when there are none."""
    problems = check_sources(recipe, project_dir)
    if problems:
        lines = "\n".join(f"  - {p.render()}" for p in problems)
        raise DataError(f"Data sources do not match the recipe: {len(problems)} problem(s)\n{lines}")


def _source_schema(recipe: "Recipe", project_dir: Path, name: str, problems: list[Problem]) -> Any:
    src = recipe.data.sources[name]
    path = source_file(recipe, project_dir, name)
    key = f"data.sources.{name}.path"
    if not path.is_file():
        problems.append(Problem(path=key, message=f"File not found: {path}.", value=src.path,
                                has_value=True, hint="Fix the path (relative to the project "
                                "directory) or create the file, e.g. `python scripts/make_data.py`."))
        return None
    try:
        return read_schema(path, src.type)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for unreadable files
        problems.append(Problem(path=key, message=f"{path} is not a readable {src.type} file: {exc}",
                                hint=f"Check data.sources.{name}.type matches the file's format."))
        return None


def _check_timestamp(schema: Any, col: str, key: str, path: Path) -> list[Problem]:
    import pyarrow.types as pat

    if col not in schema.names:
        return [_missing(key, col, path, schema)]
    if not pat.is_timestamp(schema.field(col).type):
        return [Problem(path=key, value=col, has_value=True,
                        message=f"Column '{col}' in {path} has type {schema.field(col).type}; "
                                "it must be a timestamp.",
                        hint="Store event times as timestamps (e.g. pandas.to_datetime(..., utc=True)).")]
    return []


def _check_column(schema: Any, col: str, declared: str, key: str, path: Path) -> list[Problem]:
    import pyarrow.types as pat

    if col not in schema.names:
        return [_missing(key, col, path, schema)]
    arrow_type = schema.field(col).type
    if not any(getattr(pat, pred)(arrow_type) for pred in _FITS[declared]):
        return [Problem(path=key, value=declared, has_value=True,
                        message=f"Column '{col}' in {path} has type {arrow_type}, "
                                f"which does not fit {declared}.",
                        hint="Declare the column's real type in the recipe or convert the file.")]
    return []


def _missing(key: str, col: str, path: Path, schema: Any) -> Problem:
    return Problem(path=key, value=col, has_value=True,
                   message=f"Column '{col}' not found in {path}.",
                   hint=f"Columns there: {', '.join(schema.names)}.")


def _check_views(recipe: "Recipe", project_dir: Path, schemas: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for vname, view in recipe.features.views.items():
        schema = schemas.get(view.source)
        if schema is None:
            continue
        path = source_file(recipe, project_dir, view.source)
        for field, declared in view.fields.items():
            problems += _check_column(schema, field, declared, f"features.views.{vname}.fields.{field}",
                                      path)
        for ename in view.entities:
            ent = recipe.features.entities.get(ename)
            for key in ent.join_keys if ent else ():
                problems += _check_column(schema, key, ent.value_type,
                                          f"features.entities.{ename}.join_keys", path)
    return problems


def _check_label(recipe: "Recipe", project_dir: Path, schemas: dict[str, Any]) -> list[Problem]:
    label = recipe.training.label
    schema = schemas.get(label.source)
    if schema is None:
        return []
    path = source_file(recipe, project_dir, label.source)
    problems = [] if label.column in schema.names else [
        _missing("training.label.column", label.column, path, schema)]
    from framework.backends.feast.specs import join_keys

    for key in join_keys(recipe):
        ent = next(e for e in recipe.features.entities.values() if key in e.join_keys)
        problems += _check_column(schema, key, ent.value_type, "training.label.source", path)
    return problems
