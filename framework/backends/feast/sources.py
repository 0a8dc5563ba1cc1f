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

#: Arrow type predicates each declared value type accepts (widening only, never lossy). A
#: dictionary-encoded (categorical) column is judged by its value type.
_FITS = {
    "string": ("is_string", "is_large_string", "is_string_view"),
    "int32": ("is_int8", "is_int16", "is_int32", "is_uint8", "is_uint16"),
    "int64": ("is_int8", "is_int16", "is_int32", "is_int64", "is_uint8", "is_uint16", "is_uint32"),
    "float32": ("is_floating", "is_integer"),
    "float64": ("is_floating", "is_integer"),
    "bool": ("is_boolean",),
}
#: Labels per task: what the objective needs, for messages.
_LABEL_RULE = {
    "binary": "binary:logistic needs labels 0 and 1 (or false/true)",
    "multiclass": "multi:softprob needs integer classes 0..num_class-1",
    "regression": "a regression objective needs numeric labels",
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


def _check_column(schema: Any, col: str, declared: str, key: str, path: Path,
                  fix: str = "Declare the column's type as {real}") -> list[Problem]:
    """The column exists and its type fits ``declared``; ``fix`` says how, given the real type."""
    if col not in schema.names:
        return [_missing(key, col, path, schema)]
    arrow_type = schema.field(col).type
    if fits(declared, arrow_type):
        return []
    real = loom_type(arrow_type)
    return [Problem(path=key, value=declared, has_value=True,
                    message=f"Column '{col}' in {path} has type {arrow_type}, "
                            f"which does not fit {declared}.",
                    hint=(fix.format(real=real) if real else "Loom has no value type for it; drop it")
                    + ", or convert the column in the file.")]


def fits(declared: str, arrow_type: Any) -> bool:
    """Whether a column of ``arrow_type`` can be read as the declared Loom value type."""
    import pyarrow.types as pat

    if pat.is_dictionary(arrow_type):  # categorical columns (pandas 'category')
        arrow_type = arrow_type.value_type
    return any(getattr(pat, pred)(arrow_type) for pred in _FITS[declared] if hasattr(pat, pred))


def loom_type(arrow_type: Any) -> str | None:
    """The narrowest Loom value type a column of ``arrow_type`` fits, or None."""
    order = ("bool", "int32", "int64", "float32", "float64", "string")
    if str(arrow_type) == "double":
        return "float64"
    return next((t for t in order if fits(t, arrow_type)), None)


def _missing(key: str, col: str, path: Path, schema: Any) -> Problem:
    import difflib  # error path only

    close = difflib.get_close_matches(col, schema.names, n=1, cutoff=0.6)
    mean = f"Did you mean '{close[0]}'? " if close else ""
    return Problem(path=key, value=col, has_value=True,
                   message=f"Column '{col}' not found in {path}.",
                   hint=f"{mean}Columns there: {', '.join(schema.names)}.")


def _check_views(recipe: "Recipe", project_dir: Path, schemas: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for vname, view in recipe.features.views.items():
        schema = schemas.get(view.source)
        if schema is None:
            continue
        path = source_file(recipe, project_dir, view.source)
        for field, declared in view.fields.items():
            problems += _check_column(schema, field, declared, f"features.views.{vname}.fields.{field}",
                                      path, f"Declare it as `{field}: {{real}}` in features.views.{vname}.fields")
        for ename in view.entities:
            problems += _check_keys(recipe, ename, schema, path)
    return problems


def _check_keys(recipe: "Recipe", ename: str, schema: Any, path: Path) -> list[Problem]:
    """The entity's join keys are columns of the source, typed as the entity's value_type."""
    ent = recipe.features.entities.get(ename)
    problems: list[Problem] = []
    for key in ent.join_keys if ent else ():
        if key not in schema.names:
            problems.append(_missing(f"features.entities.{ename}.join_keys", key, path, schema))
        else:
            problems += _check_column(schema, key, ent.value_type,
                                      f"features.entities.{ename}.value_type", path,
                                      f"Set features.entities.{ename}.value_type: {{real}}")
    return problems


def _check_label(recipe: "Recipe", project_dir: Path, schemas: dict[str, Any]) -> list[Problem]:
    label = recipe.training.label
    schema = schemas.get(label.source)
    if schema is None:
        return []
    path = source_file(recipe, project_dir, label.source)
    if label.column in schema.names:
        problems = _check_label_values(recipe, path)
    else:
        problems = [_missing("training.label.column", label.column, path, schema)]
    for ename in _model_entities(recipe):
        for p in _check_keys(recipe, ename, schema, path):
            problems.append(Problem(path=p.path, value=p.value, has_value=p.has_value, hint=p.hint,
                                    message=f"{p.message} The label source "
                                            f"({label.source}) needs it to join features."))
    return problems


def _model_entities(recipe: "Recipe") -> list[str]:
    """Entities of the views the model reads, in first-use order (their keys join labels to features)."""
    names: list[str] = []
    for view in dict.fromkeys(v for v, _ in recipe.feature_refs()):
        for e in recipe.features.views[view].entities if view in recipe.features.views else ():
            if e not in names:
                names.append(e)
    return names


def _check_label_values(recipe: "Recipe", path: Path) -> list[Problem]:
    """The label column's values suit the objective; reads that one column only."""
    import pyarrow.types as pat

    label, task = recipe.training.label, recipe.task
    try:
        column = _read_column(path, recipe.data.sources[label.source].type, label.column)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for unreadable files
        return [Problem(path="training.label.column", message=f"Cannot read column '{label.column}' "
                        f"of {path}: {exc}", hint="Check the file is complete and readable.")]
    kind = column.type.value_type if pat.is_dictionary(column.type) else column.type
    values = column.drop_null().unique().to_pylist()
    shown = ", ".join(map(repr, sorted(values, key=str)[:6])) + (", ..." if len(values) > 6 else "")
    problem = None
    if column.null_count:
        problem = f"{column.null_count:,} of {len(column):,} rows have no label; every training row needs one"
    elif task == "regression" and not (pat.is_integer(kind) or pat.is_floating(kind)):
        problem = f"it has type {kind}, but {_LABEL_RULE[task]}"
    elif task == "binary" and not (pat.is_boolean(kind) or pat.is_integer(kind) or pat.is_floating(kind)):
        problem = f"it has type {kind} (values {shown}), but {_LABEL_RULE[task]}"
    elif task == "binary" and (len(values) != 2 or not set(values) <= {0, 1}):
        problem = f"its values are {shown or 'none'}, but {_LABEL_RULE[task]}"
    elif task == "multiclass":
        k = recipe.training.model.num_class or 0
        if not (pat.is_integer(kind) or pat.is_floating(kind)) or pat.is_boolean(kind):
            problem = f"it has type {kind} (values {shown}), but {_LABEL_RULE[task]}"
        elif not all(float(v).is_integer() and 0 <= v < k for v in values):
            bad = [v for v in values if not (float(v).is_integer() and 0 <= v < k)]
            problem = (f"it holds {', '.join(map(repr, sorted(bad)[:6]))}, but with num_class={k} "
                       f"{_LABEL_RULE[task].replace('num_class-1', str(k - 1))}")
    if problem is None:
        return []
    return [Problem(path="training.label.column", value=label.column, has_value=True,
                    message=f"Label column '{label.column}' in {path}: {problem} "
                            f"(objective {recipe.training.model.objective}).",
                    hint=_label_hint(task))]


def _label_hint(task: str) -> str:
    if task == "binary":
        return ("Encode the label as 0/1 (e.g. df['y'] = (df['y'] == 'yes').astype(int)), or pick "
                "another objective in training.model.objective.")
    if task == "multiclass":
        return "Encode classes as 0..k-1 and set training.model.num_class to k."
    return "Store the target as a number, or pick a classification objective."


def _read_column(path: Path, fmt: str, column: str) -> Any:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.ParquetFile(path).read(columns=[column]).column(0)  # read_table would import pandas
    return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(include_columns=[column])).column(0)
