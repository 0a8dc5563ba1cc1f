"""Streaming writes into ``push: true`` views through their Feast push source (the speed layer).

A ``Pusher`` is built from the same plain settings a serving replica uses for online lookups
(``{"type": "feast", "repo_dir": ..., "feature_service": ...}``), so whatever serves a model can
also write an event's values before predicting on it. Feast is imported inside the functions.

Where the pushed rows go, by ``features.store.offline.type`` (measured on Feast 0.67):

- ``duckdb`` and ``file``: ``PushMode.ONLINE_AND_OFFLINE``. The online store gets the row, and
  Feast appends it to the view's source parquet file (it reads the whole file and writes it back),
  so later materializations and training datasets see it, and the file's fingerprint changes, so
  the next ``loom plan`` rebuilds the dataset. Measured on 2 cores, one row: 20 / 50 / 115 ms on a
  1k / 100k / 1M-row file, about 10 ms of it online; the rest is the rewrite, which grows with the file.

On a node that cannot read the workspace (a cluster's other nodes: the settings then carry the
repo's ``config`` inline, as a replica's do), the store is opened from that config. A view whose
source file that node cannot read is pushed to the online store only: the row serves at once, and
``online_only`` names the view (``loom stream status`` shows it per consumer), but the offline file
does not get it. Keep the source on storage every node reaches to have both.

Pushes from processes on one machine take a lock per view (``<repo_dir>/push-<view>.lock``) around
the write, so two pushers never lose each other's rows. Readers (materialize, training) do not
take it, and Feast's rewrite is not atomic: a reader at that moment may fail, and a pusher killed
mid-write can leave the file damaged. Keep a copy of source files that are pushed to.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from framework.backends.feast.specs import push_source_name
from framework.errors import BackendError

__all__ = ["Pusher", "push_source_name"]

#: Offline store types whose Feast store takes pushed rows (``PushMode.ONLINE_AND_OFFLINE``).
OFFLINE_WRITABLE = ("duckdb", "file")


class _Target:
    """What one view's pushes need: its push source, the file's columns and their Arrow types."""

    def __init__(self, view: str, spec: dict[str, Any], schema: Any, created: str,
                 offline: bool) -> None:
        self.view = view
        self.source = push_source_name(view)
        self.keys = list(spec["keys"])
        self.fields = dict(spec["fields"])
        self.timestamp_field = spec["timestamp_field"]
        self.created = created
        self.schema = schema  # the batch source file's Arrow schema: the offline write needs every column
        self.offline = offline  # rows also go to the source file (PushMode.ONLINE_AND_OFFLINE)


class Pusher:
    """Writes streaming rows into ``push: true`` views, online and (where the store can) offline.

    Built from plain, picklable arguments (``from_settings``), like ``OnlineFeatureClient``:
    pickling a pusher pickles those arguments, and unpickling opens the store again.
    """

    def __init__(self, store: Any, targets: dict[str, _Target], settings: dict[str, Any],
                 views: dict[str, dict[str, Any]]) -> None:
        self._store = store
        self._targets = targets
        self._settings = dict(settings)
        self._views = {k: dict(v) for k, v in views.items()}
        self.offline = bool(targets) and all(t.offline for t in targets.values())
        """True when every view's pushed rows also reach the offline store
        (``PushMode.ONLINE_AND_OFFLINE``)."""
        self.online_only = sorted(v for v, t in targets.items() if not t.offline)
        """Views whose pushed rows reach the online store only (see the module's docstring)."""

    @classmethod
    def from_settings(cls, settings: dict[str, Any], views: dict[str, dict[str, Any]]) -> "Pusher":
        """Open the Feast repo of ``settings`` and resolve each view's push source and file once.

        Args:
            settings: the replica's feature settings: ``{"type": "feast", "repo_dir": ...,
                "feature_service": ..., "config": ...}`` (``repo_dir``, and ``config``, the
                repo's settings inline, which is used instead when present).
            views: view name -> ``{"keys": [join keys], "fields": {field: value type},
                "timestamp_field": str}``, for the ``push: true`` views rows will be pushed to.

        Raises:
            BackendError: the repo is missing, or a view is not in the registry with a push source.
        """
        from feast import FeatureStore

        if settings.get("type") != "feast":
            raise BackendError(f"Pushing needs Feast feature settings (type: feast), not "
                               f"{settings.get('type')!r}.")
        from framework.backends.feast.online import _repo_config

        repo_dir, config = str(settings["repo_dir"]), settings.get("config")
        if config is None and not (Path(repo_dir) / "feature_store.yaml").is_file():
            raise BackendError(f"No Feast repo at {repo_dir}: run `loom launch recipe=NAME` for this "
                               "recipe first.")
        try:
            store = FeatureStore(repo_path=repo_dir) if config is None else \
                FeatureStore(config=_repo_config(config))
        except Exception as exc:  # noqa: BLE001 - Feast raises many types for bad configs
            raise BackendError(f"Feast could not open the feature store in {repo_dir}: {exc}") from exc
        writable = store.config.offline_store.type in OFFLINE_WRITABLE
        targets = {name: _target(store, name, spec, writable, elsewhere=config is not None)
                   for name, spec in views.items()}
        return cls(store, targets, settings, views)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Pusher.from_settings, (self._settings, self._views))

    def push(self, view: str, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` into ``view``: the online store first, then the offline store.

        Args:
            view: a ``push: true`` view given to ``from_settings``.
            rows: one dict per event with the view's join keys, its timestamp field (a datetime or
                an ISO 8601 string; naive means UTC) and every field of the view. Values are cast
                to the types of the source file's columns (``"42"`` becomes 42 for an int64 field).

        Raises:
            BackendError: the view is unknown, a row lacks a column or holds a value of the wrong
                type, or Feast refused the write.
        """
        target = self._targets.get(view)
        if target is None:
            raise BackendError(f"features.views.{view}: not a push view of this pusher "
                               f"(views: {', '.join(sorted(self._targets)) or 'none'}).")
        if not rows:
            return
        frame = _frame(target, rows)
        from feast.data_source import PushMode

        mode = PushMode.ONLINE_AND_OFFLINE if target.offline else PushMode.ONLINE
        try:
            with _lock(_lock_path(Path(self._settings["repo_dir"]), view), target.offline):
                self._store.push(target.source, frame, allow_registry_cache=True, to=mode)
        except Exception as exc:  # noqa: BLE001 - Feast and the stores raise many types
            raise BackendError(f"features.views.{view}: Feast could not push {len(rows)} row(s) "
                               f"through '{target.source}': {exc}"[:1000]) from exc


def _lock_path(repo_dir: Path, view: str) -> Path:
    """The view's push lock: in the repo, or (a node without the workspace that reads a shared
    source file) in this machine's temp dir."""
    if repo_dir.is_dir():
        return repo_dir / f"push-{view}.lock"
    import hashlib
    import tempfile

    tag = hashlib.sha256(f"{repo_dir}:{view}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"loom-push-{tag}.lock"


def _target(store: Any, view: str, spec: dict[str, Any], writable: bool,
            elsewhere: bool = False) -> _Target:
    """The view's push target, checked against the registry and the source file's schema.

    ``elsewhere``: this node opened the store from inline settings and may not see the source
    file; when it cannot read it, the view is pushed online only, typed from the registry.
    """
    import pyarrow.parquet as pq
    from feast.data_source import PushSource

    try:
        fv = store.get_feature_view(view, allow_registry_cache=False)
    except Exception as exc:  # noqa: BLE001 - Feast raises many types here
        raise BackendError(f"features.views.{view}: not in the Feast registry ({exc}). Run "
                           "`loom launch recipe=NAME` for this recipe first.") from exc
    if not isinstance(fv.stream_source, PushSource) or fv.stream_source.name != push_source_name(view):
        raise BackendError(f"features.views.{view}: the view has no push source in the Feast registry. "
                           f"Set features.views.{view}.push: true and run `loom launch recipe=NAME`.")
    path = fv.batch_source.path
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for unreadable files
        if elsewhere:
            created = fv.batch_source.created_timestamp_column or ""
            return _Target(view, spec, _registry_schema(fv, spec, created), created, offline=False)
        raise BackendError(f"features.views.{view}: cannot read the source file {path}: {exc}") from exc
    missing = [c for c in [*spec["keys"], spec["timestamp_field"], *spec["fields"]] if c not in schema.names]
    if missing:
        raise BackendError(f"features.views.{view}: columns {missing} are not in the source file "
                           f"{path} (it has {schema.names}).")
    return _Target(view, spec, schema, fv.batch_source.created_timestamp_column or "", writable)


def _registry_schema(fv: Any, spec: dict[str, Any], created: str) -> Any:
    """The columns an online push needs (join keys, event and created time, the view's fields),
    typed as the registry has them, for a node that cannot read the view's source file."""
    import pyarrow as pa
    from feast.types import from_feast_to_pyarrow_type

    types = {f.name: f.dtype for f in [*fv.entity_columns, *fv.features]}
    columns = [pa.field(k, from_feast_to_pyarrow_type(types[k])) for k in spec["keys"]]
    times = [spec["timestamp_field"], *([created] if created else [])]
    columns += [pa.field(t, pa.timestamp("us", tz="UTC")) for t in times]
    columns += [pa.field(f, from_feast_to_pyarrow_type(types[f])) for f in spec["fields"]]
    return pa.schema(columns)


def _frame(target: _Target, rows: list[dict[str, Any]]) -> Any:
    """A pandas frame with every column of the source file, cast to the file's types.

    Columns of the file that are not the view's (nor its keys or times) are null; the created
    timestamp, when the source has one, is now: the pushed values are known from this moment.
    """
    import pyarrow as pa

    needed = [*target.keys, target.timestamp_field, *target.fields]
    for i, row in enumerate(rows):
        lacking = [c for c in needed if row.get(c) is None]
        if lacking:
            raise BackendError(f"features.views.{target.view}: pushed row {i} lacks {lacking}; every "
                               f"row needs {needed}.")
    now = datetime.now(timezone.utc)
    arrays = []
    for field in target.schema:
        name = field.name
        if name == target.timestamp_field:
            arrays.append(_times([r[name] for r in rows], field.type, target.view, name))
        elif name == target.created:
            arrays.append(_times([now] * len(rows), field.type, target.view, name))
        elif name in needed:
            arrays.append(_cast([r[name] for r in rows], field.type, target.view, name))
        else:
            arrays.append(pa.nulls(len(rows), type=field.type))
    return pa.Table.from_arrays(arrays, schema=target.schema).to_pandas()


def _cast(values: list[Any], arrow_type: Any, view: str, column: str) -> Any:
    """``values`` as an Arrow array of ``arrow_type``; text (as from an event bus) is parsed."""
    import pyarrow as pa

    try:
        if any(isinstance(v, str) for v in values) and not pa.types.is_string(arrow_type):
            return pa.array([str(v) for v in values], pa.string()).cast(arrow_type)
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            return pa.array([str(v) for v in values], arrow_type)
        return pa.array(values).cast(arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise BackendError(f"features.views.{view}: pushed values of '{column}' do not fit its type "
                           f"{arrow_type}: {exc}"[:500]) from exc


def _times(values: list[Any], arrow_type: Any, view: str, column: str) -> Any:
    """Datetimes or ISO strings (naive = UTC) as an Arrow array of the file's timestamp type."""
    import pandas as pd
    import pyarrow as pa

    try:
        stamps = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601")
        # Down to the file's unit first: a cast that drops sub-unit digits is refused as lossy.
        stamps = stamps.dt.floor(getattr(arrow_type, "unit", "us"))
        if getattr(arrow_type, "tz", None) is None:
            stamps = stamps.dt.tz_localize(None)  # a naive file column holds UTC wall times
        return pa.array(stamps).cast(arrow_type)
    except (ValueError, TypeError, pa.ArrowInvalid) as exc:
        raise BackendError(f"features.views.{view}: pushed '{column}' values are not times that fit "
                           f"{arrow_type}: {exc}"[:500]) from exc


class _lock:
    """An exclusive ``flock`` on ``path`` while held (a no-op when ``enabled`` is False)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled, self.fd = path, enabled, -1

    def __enter__(self) -> "_lock":
        if self.enabled:
            import fcntl

            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the lock
            self.fd = -1
