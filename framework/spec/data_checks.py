"""``check_data_checks``: a source's checks fit the column types the recipe itself declares.

``loom validate`` never reads data, so it judges a check only against what the recipe says about
a column (a view's field type, an entity's key type, the timestamp fields); a column the recipe
does not declare is looked up in the file by ``loom plan``.
"""

from typing import Any

from framework.errors import Problem
from framework.spec.recipe import Recipe

_NUMERIC = ("int32", "int64", "float32", "float64")


def declared_types(r: Recipe, source: str) -> dict[str, str]:
    """``{column: type}`` for the columns of ``source`` the recipe declares (``timestamp`` for its
    timestamp fields), with the recipe key that declares each."""
    src = r.data.sources[source]
    out: dict[str, str] = {src.timestamp_field: "timestamp"}
    if src.created_timestamp_field:
        out[src.created_timestamp_field] = "timestamp"
    for view in r.features.views.values():
        if view.source != source:
            continue
        out.update(view.fields)
        for ename in view.entities:
            ent = r.features.entities.get(ename)
            out.update({k: ent.value_type for k in ent.join_keys} if ent else {})
    return out


def _fits(value: Any, declared: str) -> bool:
    if declared == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if declared in ("int32", "int64"):
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if declared in ("float32", "float64"):
        return isinstance(value, (int, float))
    return isinstance(value, str) if declared == "string" else False


def check_data_checks(r: Recipe) -> list[Problem]:
    """Ranges check numeric columns and allowed values fit their column's declared type."""
    problems = []
    for name, src in r.data.sources.items():
        types, base = declared_types(r, name), f"data.sources.{name}.checks"
        for col in src.checks.range:
            declared = types.get(col)
            if declared is not None and declared not in _NUMERIC:
                hint = ("Check the newest row's age with freshness.max_age_s." if declared == "timestamp"
                        else "Use allowed_values for a column of this type.")
                problems.append(Problem(path=f"{base}.range.{col}", value=col, has_value=True, hint=hint,
                                        message=f"A range needs a numeric column; '{col}' is {declared}."))
        for col, values in src.checks.allowed_values.items():
            declared = types.get(col)
            bad = [v for v in values if declared is not None and not _fits(v, declared)]
            if bad:
                problems.append(Problem(
                    path=f"{base}.allowed_values.{col}", value=bad[0], has_value=True,
                    message=f"Column '{col}' is {declared}; {', '.join(map(repr, bad))} cannot occur in it.",
                    hint=f"Write the allowed values as {declared} values."))
    return problems
