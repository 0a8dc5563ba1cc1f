"""Plain spec dicts for the Feast objects a recipe defines (the input of ``objects.build``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework.errors import BackendError

if TYPE_CHECKING:
    from framework.backends.base import RunContext
    from framework.spec import Recipe

FINGERPRINT_TAG = "loom.fingerprint"


def entity_spec(recipe: "Recipe", name: str, fingerprint: str) -> dict[str, Any]:
    """The spec of entity ``name``, tagged with the step fingerprint."""
    e = recipe.features.entities[name]
    if len(e.join_keys) != 1:
        raise BackendError(
            f"features.entities.{name}.join_keys: Got {e.join_keys}. Feast 0.67 supports one join "
            "key per entity; combine the columns into one key column in the sources."
        )
    return {"name": name, "join_key": e.join_keys[0], "value_type": e.value_type,
            "description": e.description, "tags": {FINGERPRINT_TAG: fingerprint}}


def source_spec(ctx: "RunContext", name: str, path: str) -> dict[str, Any]:
    """The spec of data source ``name`` read from ``path`` (a parquet file)."""
    s = ctx.recipe.data.sources[name]
    return {"name": name, "path": path, "timestamp_field": s.timestamp_field,
            "created_timestamp_column": s.created_timestamp_field or "",
            "description": s.description}


def view_spec(recipe: "Recipe", name: str, fingerprint: str) -> dict[str, Any]:
    """The spec of feature view ``name``: entity join keys first in the schema, then the fields.

    A ``push`` view also names its push source (``push_source``); the key is absent otherwise, so
    the specs of views without push stay as they were.
    """
    v = recipe.features.views[name]
    entities = [[e, _join_key(recipe, e), recipe.features.entities[e].value_type] for e in v.entities]
    schema = [[key, vtype] for _, key, vtype in entities] + [[f, t] for f, t in v.fields.items()]
    spec = {"name": name, "entities": entities, "source": v.source, "ttl_s": v.ttl_s,
            "online": v.online, "schema": schema, "tags": {**v.tags, FINGERPRINT_TAG: fingerprint}}
    if v.push:
        spec["push_source"] = push_source_name(name)
    return spec


def push_source_name(view: str) -> str:
    """``<view>_push``: the Feast push source feeding a ``push: true`` view."""
    return f"{view}_push"


def service_spec(recipe: "Recipe", fingerprint: str) -> dict[str, Any]:
    """The model's feature service spec; features grouped by view in first-use order."""
    groups: dict[str, list[str]] = {}
    for view, feat in recipe.feature_refs():
        groups.setdefault(view, []).append(feat)
    return {"name": recipe.features.service.name, "features": [[v, f] for v, f in groups.items()],
            "tags": {FINGERPRINT_TAG: fingerprint}}


def _join_key(recipe: "Recipe", entity: str) -> str:
    return recipe.features.entities[entity].join_keys[0]


def join_keys(recipe: "Recipe") -> list[str]:
    """Join keys of every entity the model's features need, in first-use order."""
    keys: list[str] = []
    for view in dict.fromkeys(v for v, _ in recipe.feature_refs()):
        for e in recipe.features.views[view].entities:
            key = _join_key(recipe, e)
            if key not in keys:
                keys.append(key)
    return keys
