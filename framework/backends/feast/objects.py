"""Feast objects from a plain spec dict; self-contained (stdlib + feast) because the repo file embeds it.

The same ``build`` function makes the objects Loom applies and, copied verbatim into the generated
feature repo, the objects the ``feast`` CLI reads, so ``feast plan`` sees exactly what Loom applied.
Do not import anything from ``framework`` here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

FEAST_TYPES = {
    "string": ("STRING", "String"),
    "int32": ("INT32", "Int32"),
    "int64": ("INT64", "Int64"),
    "float32": ("FLOAT", "Float32"),
    "float64": ("DOUBLE", "Float64"),
    "bool": ("BOOL", "Bool"),
}


def build(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Feast objects for ``spec``: ``{"entities"|"sources"|"views"|"services": {name: object}}``.

    Args:
        spec: ``{"entities": {...}, "sources": {...}, "views": {...}, "services": {...}}`` of plain
            dicts, as ``framework.backends.feast.specs`` writes them.
    """
    entities = {n: _entity(e) for n, e in spec.get("entities", {}).items()}
    sources = {n: _source(s) for n, s in spec.get("sources", {}).items()}
    views = {n: _view(v, entities, sources) for n, v in spec.get("views", {}).items()}
    services = {n: _service(s, views) for n, s in spec.get("services", {}).items()}
    return {"entities": entities, "sources": sources, "views": views, "services": services}


def _entity(e: dict[str, Any]) -> Any:
    from feast import Entity, ValueType

    return Entity(
        name=e["name"],
        join_keys=[e["join_key"]],
        value_type=getattr(ValueType, FEAST_TYPES[e["value_type"]][0]),
        description=e.get("description", ""),
        tags=dict(e.get("tags", {})),
    )


def _source(s: dict[str, Any]) -> Any:
    from feast import FileSource

    source = FileSource(
        name=s["name"],
        path=s["path"],
        timestamp_field=s["timestamp_field"],
        created_timestamp_column=s.get("created_timestamp_column") or "",
        description=s.get("description", ""),
    )
    if s.get("meta"):
        # Feast compares the source inside a view with its timestamps, and a fresh FileSource says
        # "created now": pin the times the registry stored, or every `feast plan` shows an update.
        source.created_timestamp, source.last_updated_timestamp = (
            datetime.fromisoformat(t) for t in s["meta"])
    return source


def _view(v: dict[str, Any], entities: dict[str, Any], sources: dict[str, Any]) -> Any:
    from feast import Entity, FeatureView, Field, ValueType
    from feast import types as ft

    # An entity the view names but the spec lacks (applied in an earlier step) is rebuilt by name.
    ents = [entities.get(n) or Entity(name=n, join_keys=[k], value_type=getattr(ValueType, FEAST_TYPES[t][0]))
            for n, k, t in v["entities"]]
    return FeatureView(
        name=v["name"],
        entities=ents,
        ttl=timedelta(seconds=v["ttl_s"]),
        online=v["online"],
        source=_push_source(v, sources[v["source"]]) if v.get("push_source") else sources[v["source"]],
        schema=[Field(name=c, dtype=getattr(ft, FEAST_TYPES[t][1])) for c, t in v["schema"]],
        tags=dict(v.get("tags", {})),
    )


def _push_source(v: dict[str, Any], batch_source: Any) -> Any:
    """The view's push source over ``batch_source``. Feast 0.67 ties it to a view as the view's
    ``source``: it becomes the ``stream_source``; materialization and training read ``batch_source``."""
    from feast import PushSource

    source = PushSource(name=v["push_source"], batch_source=batch_source)
    if v.get("push_meta"):  # pinned like a file source's times (see _source)
        source.created_timestamp, source.last_updated_timestamp = (
            datetime.fromisoformat(t) for t in v["push_meta"])
    return source


def _service(s: dict[str, Any], views: dict[str, Any]) -> Any:
    from feast import FeatureService

    return FeatureService(
        name=s["name"],
        features=[views[view][list(feats)] for view, feats in s["features"]],
        tags=dict(s.get("tags", {})),
    )
