"""Online features: the lookup protocol, its implementations, and assembling a model's input row."""

from __future__ import annotations

import math
from typing import Any, Protocol

from framework.serving.problems import ApiError


class FeatureLookup(Protocol):
    """Reads the latest feature values for entity rows (the Feast online store in production).

    A lookup may set ``blocking = False`` when ``get`` never waits on I/O (it then runs on the
    replica's event loop); every other lookup runs in a thread under
    ``serving.timeouts.feature_lookup_ms``. ``get`` raises ``EntityKeyError`` for keys the store
    cannot take (the client's fault, answered 422); any other exception is a store failure.
    """

    def get(self, entity_rows: list[dict]) -> list[dict[str, Any]]:
        """One dict of feature name -> value (None when unknown) per entity row, in order."""
        ...


class EntityKeyError(ValueError):
    """The request's entity keys cannot be looked up (the client's input, not a store failure)."""


class NoLookup:
    """For models whose requests carry every feature: nothing to look up."""

    blocking = False

    def get(self, entity_rows: list[dict]) -> list[dict[str, Any]]:
        """Nothing for every row."""
        return [{} for _ in entity_rows]


class InMemoryLookup:
    """Feature rows held in memory, keyed by join-key values: tests, demos and benchmarks.

    Settings: ``{"type": "memory", "rows": [{join keys..., features...}]}`` or
    ``{"type": "memory", "path": "features.parquet", "timestamp_field": "event_timestamp"}``
    (the latest row per entity wins, like a materialized online store).
    """

    blocking = False

    def __init__(self, keys: list[str], feature_names: list[str], rows: list[dict]) -> None:
        self.keys = keys
        self.feature_names = feature_names
        self._table = {self._key(r): {f: r.get(f) for f in feature_names} for r in rows}

    def _key(self, row: dict) -> tuple:
        return tuple(str(row.get(k)) for k in self.keys)

    def get(self, entity_rows: list[dict]) -> list[dict[str, Any]]:
        """The held row of each entity; all None for an unknown entity."""
        empty = dict.fromkeys(self.feature_names)
        return [dict(self._table.get(self._key(r), empty)) for r in entity_rows]


def _parquet_rows(path: str, keys: list[str], timestamp_field: str | None) -> list[dict]:
    import pandas as pd

    frame = pd.read_parquet(path)
    if timestamp_field and timestamp_field in frame.columns:
        frame = frame.sort_values(timestamp_field)
    frame = frame.drop_duplicates(subset=keys, keep="last")
    return frame.to_dict(orient="records")


def build_lookup(settings: dict[str, Any], keys: list[str], feature_names: list[str]) -> FeatureLookup:
    """The lookup a replica uses, from the plain settings in the app's args.

    ``type``: ``feast`` (``repo_dir``, ``feature_service``, optional ``ttl_s``: view -> seconds,
    read from the Feast registry when absent, optional ``config``: the repo's settings inline,
    for nodes that cannot read ``repo_dir``), ``memory`` (``rows`` or ``path``) or ``none``.
    The Feast client is imported here, inside the replica, never by the driver.
    """
    kind = settings.get("type", "none")
    if kind == "feast":
        from framework.backends.feast.online import OnlineFeatureClient

        return OnlineFeatureClient.from_workspace(settings["repo_dir"], settings["feature_service"],
                                                  feature_names, settings.get("ttl_s"),
                                                  settings.get("config"))
    if kind == "memory":
        rows = settings.get("rows")
        if rows is None:
            rows = _parquet_rows(settings["path"], keys, settings.get("timestamp_field"))
        return InMemoryLookup(keys, feature_names, rows)
    if kind == "none":
        return NoLookup()
    raise ValueError(f"features.type {kind!r} is not one of feast, memory, none")


def check_request_features(features: dict[str, Any], feature_names: list[str]) -> None:
    """422 for unknown names and values that are not finite numbers or booleans."""
    unknown = sorted(set(features) - set(feature_names))
    if unknown:
        raise ApiError(422, f"Unknown features: {', '.join(unknown[:20])}.",
                       [{"field": f"features.{n}", "message": "not a feature of this model"}
                        for n in unknown[:20]])
    bad = [n for n, v in features.items() if v is not None and not _is_number(v)]
    if bad:
        raise ApiError(422, "Features must be finite numbers of at most 3.4e38 in size (the model "
                            f"reads 32-bit floats) or booleans: {', '.join(sorted(bad)[:20])}.",
                       [{"field": f"features.{n}", "message": "not a finite 32-bit number"}
                        for n in sorted(bad)[:20]])


#: The largest float32: XGBoost reads 32-bit floats, so a larger value would reach the model as
#: infinity and get a confident answer for a number nobody sent.
FLOAT32_MAX = 3.4028234663852886e38


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    try:
        return isinstance(value, (int, float)) and abs(value) <= FLOAT32_MAX
    except OverflowError:  # an integer too large for a float (a 400-digit value)
        return False


def merge_row(looked_up: dict[str, Any], given: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Request features override looked-up ones; a None given value does not erase a looked-up one."""
    row = {n: looked_up.get(n) for n in names}
    row.update({n: v for n, v in given.items() if v is not None})
    return row


def missing_features(row: dict[str, Any], names: list[str]) -> list[str]:
    """Model features still without a value."""
    return [n for n in names if row.get(n) is None or (isinstance(row[n], float) and math.isnan(row[n]))]


def to_vector(row: dict[str, Any], names: list[str]) -> list[float]:
    """The model's input row, in model order; a missing value is NaN (XGBoost's missing value)."""
    return [NAN if row[n] is None else float(row[n]) for n in names]


NAN = float("nan")


def require_complete(rows: list[dict[str, Any]], instances: list[Any], looked: list[dict[str, Any]],
                     names: list[str]) -> None:
    """422 naming the missing features of the first incomplete row, and why they are missing."""
    for i, row in enumerate(rows):
        missing = missing_features(row, names)
        if missing:
            where = f"instances[{i}]: " if len(rows) > 1 else ""
            keys = instances[i].entities
            if not keys:
                hint = " Send them in 'features' or give 'entities' to look them up."
            elif not any(v is not None for v in looked[i].values()):
                named = ", ".join(f"{k}={str(v)[:64]}" for k, v in keys.items())
                hint = (f" The online store has no row for {named} (an unknown entity, or its "
                        "values are older than the view's ttl_s); send the features in "
                        "'features', or materialize that entity.")
            else:
                hint = " The online store has no current value for them; send them in 'features'."
            raise ApiError(422, f"{where}Missing required features: {', '.join(missing)}.{hint}",
                           [{"field": f"features.{n}", "message": "required"} for n in missing])
