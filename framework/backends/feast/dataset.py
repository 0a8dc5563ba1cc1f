"""The training dataset: a point-in-time join of the label rows against the model's features."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.errors import BackendError, DataError

if TYPE_CHECKING:
    from framework.backends.base import RunContext

ROW_ID = "__loom_row_id"
TIMESTAMP = "event_timestamp"


def label_frame(ctx: "RunContext") -> Any:
    """The entity rows: join keys, ``event_timestamp`` (the label's time) and the label, as pandas."""
    import pyarrow.parquet as pq

    from framework.backends.feast.sources import parquet_source
    from framework.backends.feast.specs import join_keys

    recipe = ctx.recipe
    label = recipe.training.label
    src = recipe.data.sources[label.source]
    path = parquet_source(recipe, ctx.project_dir, ctx.workspace, label.source)
    columns = list(dict.fromkeys([*join_keys(recipe), src.timestamp_field, label.column]))
    frame = pq.read_table(path, columns=columns).to_pandas()
    return frame.rename(columns={src.timestamp_field: TIMESTAMP})


def as_known_at(ctx: "RunContext") -> bool:
    """True when a source the model reads declares a created timestamp ("as known at" joins)."""
    recipe = ctx.recipe
    sources = {recipe.features.views[v].source for v, _ in recipe.feature_refs()}
    return any(recipe.data.sources[s].created_timestamp_field for s in sources)


def historical_features(store: Any, ctx: "RunContext", entity_df: Any, key: str = "training.label",
                        rows: str = "label rows") -> Any:
    """Feast's point-in-time join of ``entity_df`` against the model's feature service, as Arrow.

    Arrow, not pandas: the result only goes to a parquet file, and skipping the pandas round trip
    saves about as much time as the row checks cost. ``key`` and ``rows`` name what is joined in
    the error (the training labels, or a batch input).
    """
    service = store.get_feature_service(ctx.recipe.features.service.name, allow_cache=False)
    try:
        job = store.get_historical_features(
            entity_df=entity_df, features=service, full_feature_names=False,
            filter_by_created_timestamp=as_known_at(ctx))
        return job.to_arrow()
    except Exception as exc:  # noqa: BLE001 - the offline stores raise many types
        raise BackendError(
            f"{key}: Feast's {ctx.recipe.features.store.offline.type} offline store could not "
            f"join the {rows} against feature service '{service.name}': {exc}"
        ) from exc


def build_dataset(store: Any, ctx: "RunContext", out_path: Path) -> dict[str, Any]:
    """Join, check that every label row comes out exactly once, and write ``out_path`` (parquet).

    Raises:
        DataError: rows were lost, duplicated or collapsed by the join.
    """
    import numpy as np

    entity_df = label_frame(ctx)
    n = len(entity_df)
    entity_df[ROW_ID] = np.arange(n, dtype="int64")
    joined = _in_label_order(ctx, historical_features(store, ctx, entity_df), n)
    columns = [c for c in entity_df.columns if c != ROW_ID] + ctx.recipe.feature_names()
    _write_parquet(joined.select(columns), out_path)
    return {"path": str(out_path), "rows": n, "columns": columns}


def _in_label_order(ctx: "RunContext", joined: Any, n: int) -> Any:
    """``joined`` sorted back into label order, after checking it holds each label row exactly once."""
    import numpy as np

    if ROW_ID not in joined.column_names or joined.num_rows != n:
        _lost_rows(ctx, joined.num_rows, n)
    ids = joined.column(ROW_ID).to_numpy()
    if not (n == 0 or np.all(ids[1:] > ids[:-1])):
        order = np.argsort(ids, kind="stable")
        ids, joined = ids[order], joined.take(order)
    # n ids, strictly increasing after sorting, first 0 and last n-1: each row exactly once
    if n and not (np.all(ids[1:] > ids[:-1]) and ids[0] == 0 and ids[-1] == n - 1):
        _lost_rows(ctx, joined.num_rows, n, duplicated=True)
    return joined


def _lost_rows(ctx: "RunContext", got: int, n: int, duplicated: bool = False) -> None:
    label = ctx.recipe.training.label
    store = ctx.recipe.features.store.offline.type
    how = "some came out twice and others not at all" if duplicated else "rows were dropped or collapsed"
    raise DataError(
        f"training.label ({label.source}): {n} label rows went into the point-in-time join and "
        f"{got} came out of the '{store}' offline store: {how}. Every label row must come out "
        "exactly once. Use features.store.offline.type: duckdb (the 'file' store drops rows "
        "without features in the TTL window and collapses duplicates)."
    )


def _write_parquet(table: Any, out_path: Path) -> None:
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    # Dictionary-encode text columns only: on numeric features it costs 2-3x the write time and
    # rarely pays off (measured on 100k-1M rows).
    text = [f.name for f in table.schema if pat.is_string(f.type) or pat.is_large_string(f.type)]
    pq.write_table(table, tmp, use_dictionary=text)
    tmp.replace(out_path)
