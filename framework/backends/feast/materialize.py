"""Materialization into the online store: incremental, idempotent, reported with row counts."""

from __future__ import annotations

import contextlib
import io
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from framework.errors import BackendError

if TYPE_CHECKING:
    from framework.backends.base import RunContext

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def online_views(ctx: "RunContext") -> list[str]:
    """Names of the recipe's views marked ``online``."""
    return [n for n, v in ctx.recipe.features.views.items() if v.online]


def materialize_views(store: Any, ctx: "RunContext", views: list[str], end: datetime | None = None,
                      full: bool = False) -> dict[str, Any]:
    """Materialize ``views`` from where each one stopped (or from 1970 when ``full``) up to ``end``.

    Running it twice with the same ``end`` writes nothing the second time.

    Args:
        store: the ``FeatureStore``.
        ctx: the run context (recipe, workspace, project dir).
        views: feature view names.
        end: end of the window (timezone-aware; naive means UTC); now when None.
        full: start every view from 1970 (after its source data changed) instead of its last end.

    Returns:
        ``{"rows": total rows written, "views": [...], "per_view": {view: rows}, "end": iso time}``.
    """
    end = _utc(end or datetime.now(timezone.utc))
    per_view = {name: _materialize_one(store, ctx, name, end, full) for name in views}
    return {"rows": sum(per_view.values()), "views": list(views), "per_view": per_view,
            "end": end.isoformat()}


def _materialize_one(store: Any, ctx: "RunContext", name: str, end: datetime, full: bool) -> int:
    fv = store.registry.get_feature_view(name, store.project, allow_cache=False)
    last = fv.most_recent_end_time
    start = EPOCH if full or last is None else _utc(last)
    if start >= end:
        return 0
    rows = _rows_in_window(ctx, name, start, end)
    try:
        # Feast prints a progress bar per view; a person at a terminal gets Loom's summary instead.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            store.materialize(start_date=start, end_date=end, feature_views=[name])
    except Exception as exc:  # noqa: BLE001 - Feast and the online store raise many types
        raise BackendError(
            f"features.views.{name}: Feast could not materialize {start.isoformat()} .. "
            f"{end.isoformat()} into the {ctx.recipe.features.store.online.type} online store: {exc}"
        ) from exc
    return rows


def _rows_in_window(ctx: "RunContext", view: str, start: datetime, end: datetime) -> int:
    """Rows Feast writes for ``view`` in [start, end]: one per entity key with an event there."""
    import duckdb

    from framework.backends.feast.sources import parquet_source

    recipe = ctx.recipe
    v = recipe.features.views[view]
    src = recipe.data.sources[v.source]
    path = parquet_source(recipe, ctx.project_dir, ctx.workspace, v.source)
    keys = ", ".join(_quote(recipe.features.entities[e].join_keys[0]) for e in v.entities)
    ts = _quote(src.timestamp_field)
    sql = (f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM read_parquet(?) "
           f"WHERE {ts} >= ? AND {ts} <= ?)")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return int(con.execute(sql, [str(path), _naive(start), _naive(end)]).fetchone()[0])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _naive(t: datetime) -> datetime:
    return _utc(t).replace(tzinfo=None)

