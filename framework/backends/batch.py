"""Batch inference (``loom batch``): a table of entities scored by one registered version.

Features come from the **offline** store, point in time at each row's timestamp (or as of one
moment), so a batch sees what the online API saw then; request-style feature columns in the input
override them, as in the API. The version answers in its own contract (feature order, category
codes, task and labels), scored by a Ray Data job. Rows in = rows out: each output row carries the
input's ``row_id``, and rows with missing features are listed, never dropped.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from framework.backends.resources import require_free_cpus
from framework.errors import BackendError, DataError
from framework.state import WorkspaceState, now_text

if TYPE_CHECKING:
    import pandas as pd

    from framework.backends.base import RunContext

ROW_ID = "row_id"
_ENTITY_ROW = "__loom_row_id"
_POS = "__loom_position"
_TIMESTAMP = "event_timestamp"
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class BatchRequest:
    """What to score and with which version; None fields take the recipe's ``batch`` defaults."""

    input: Path
    output: Path
    version: str | None = None
    alias: str | None = None
    as_of: str | None = None
    force: bool = False


def run_batch(ctx: "RunContext", req: BatchRequest) -> dict[str, Any]:
    """Score ``req.input`` into ``req.output``; returns the job's summary (rows, missing, version...).

    A job whose input, source data, model version and as-of time are those of the recorded job
    for the same output (and whose output still exists) is not run again unless ``req.force``.

    Raises:
        DataError: the input lacks a join key, has a bad key type, duplicate row ids, or a bad time.
        BackendError: no such version, or the offline store or Ray failed.
    """
    from framework.backends.compiled import for_batch
    from framework.backends.model_registry.tracking import tracking_uri
    from framework.backends.model_registry.versions import resolve_model

    recipe = ctx.recipe
    ref = req.version or req.alias or recipe.batch.alias
    model = resolve_model(tracking_uri(recipe, Path(ctx.workspace)), recipe.model_id, ref)
    if not model.get("contract"):
        raise BackendError(f"Model '{recipe.model_id}' version {model['version']} has no contract "
                           "(it was trained before contracts existed); retrain it with "
                           f"`loom launch recipe={recipe.name}` to score it in batch.")
    fingerprint = _fingerprint(ctx, req, model)  # the predictor does not change the answers
    recorded = _recorded(ctx, req.output)
    if not req.force and recorded.get("fingerprint") == fingerprint and req.output.is_file():
        ctx.progress(f"batch: unchanged (same input, data and version {model['version']}); "
                     f"{req.output} is current. --force scores again.")
        return {**recorded, "unchanged": True}
    started = time.perf_counter()
    frame = read_input(req.input, recipe)
    ctx.progress(f"batch: {len(frame):,} rows from {req.input}, version {model['version']} "
                 f"({ref}), features {'as of ' + req.as_of if req.as_of else 'point in time'}")
    rows = with_features(ctx, frame, req.as_of)
    model, predictor = for_batch(ctx, model)
    scored = score(ctx, rows, model)
    summary = {**_write(scored, req, model, fingerprint, time.perf_counter() - started),
               "predictor": predictor}
    _record(ctx, req.output, summary)
    ctx.progress(f"batch: {summary['rows']:,} rows in, {summary['rows']:,} out, "
                 f"{summary['missing']:,} with missing features; {summary['rows_per_s']:,.0f} rows/s "
                 f"({predictor['name']})")
    return summary


def read_input(path: Path, recipe: Any) -> "pd.DataFrame":
    """The input table, checked: every join key present with its type, unique row ids, times."""
    import pandas as pd

    from framework.backends.feast.specs import join_keys

    if not path.is_file():
        raise DataError(f"{path}: batch input not found (--input or batch.input).")
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pyarrow and pandas raise several types for damaged files
        raise DataError(f"{path}: cannot read the batch input ({exc}).") from exc
    keys = join_keys(recipe)
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise DataError(f"{path}: the batch input lacks join key column(s) {missing} "
                        f"(features.entities); it has {list(frame.columns)[:20]}.")
    types = {k: e.value_type for e in recipe.features.entities.values() for k in e.join_keys}
    for key in keys:
        if types.get(key, "string") == "string":
            frame[key] = frame[key].astype(str)
        elif frame[key].dtype.kind not in "iu":
            raise DataError(f"{path}: join key '{key}' is {types[key]} in features.entities but the "
                            f"input column holds {frame[key].dtype}.")
    if ROW_ID not in frame.columns:
        frame[ROW_ID] = np.arange(len(frame), dtype="int64")
    elif frame[ROW_ID].duplicated().any():
        raise DataError(f"{path}: column '{ROW_ID}' has duplicate values; each row needs its own id.")
    field = recipe.batch.timestamp_field
    if field in frame.columns:
        try:
            frame[field] = pd.to_datetime(frame[field], utc=True)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path}: column '{field}' (batch.timestamp_field) is not a time: {exc}") from exc
    return frame.reset_index(drop=True)


def with_features(ctx: "RunContext", frame: "pd.DataFrame", as_of: str | None) -> "pd.DataFrame":
    """``frame`` with the model's features from the offline store (point in time), input columns
    that name a feature overriding the stored value where they hold one. Same rows, same order."""
    import pandas as pd

    from framework.backends.feast.dataset import historical_features
    from framework.backends.feast.repo import open_store
    from framework.backends.feast.specs import join_keys

    recipe, keys = ctx.recipe, join_keys(ctx.recipe)
    field = recipe.batch.timestamp_field
    entity_df = frame[keys].copy()
    if field in frame.columns:
        entity_df[_TIMESTAMP] = frame[field]
    else:
        moment = pd.Timestamp(as_of, tz="UTC") if as_of else pd.Timestamp.now(tz="UTC")
        entity_df[_TIMESTAMP] = moment
    entity_df[_ENTITY_ROW] = np.arange(len(frame), dtype="int64")
    store = open_store(recipe, Path(ctx.workspace))
    joined = historical_features(store, ctx, entity_df, "batch input", "input rows").to_pandas()
    if len(joined) != len(frame) or joined[_ENTITY_ROW].duplicated().any():
        raise BackendError(f"batch: {len(frame)} rows went into the offline store's point-in-time "
                           f"join and {len(joined)} came out; every row must come out once "
                           "(use features.store.offline.type: duckdb).")
    joined = joined.sort_values(_ENTITY_ROW).reset_index(drop=True)
    out = frame.copy()
    for name in recipe.feature_names():
        stored = joined[name]
        out[name] = frame[name].where(frame[name].notna(), stored) if name in frame.columns else stored
    return out


class _Scorer:
    """One Ray Data worker: loads the booster once and predicts batches of encoded rows.

    The driver encodes the rows in the version's contract (feature order, category codes) in one
    vectorized pass, so workers move and see numbers only, as a hand-written job's would. The
    model (and the compiled library) arrive as bytes, never as a path of the driver's machine: a
    worker on another node of a cluster scores the same.
    """

    def __init__(self, model: bytes, multiclass: bool, compiled: bytes | None = None,
                 compiled_sha256: str | None = None) -> None:
        import xgboost

        self.booster, self.multiclass = xgboost.Booster(model_file=bytearray(model)), multiclass
        if compiled is not None:  # batch.predictor chose the compiled library: only the checked bytes
            import tempfile

            from framework.serving.compiled import LIB_FILE, load_compiled

            self._dir = tempfile.TemporaryDirectory(prefix="loom-batch-")  # 0700, this worker's
            lib = Path(self._dir.name) / LIB_FILE
            lib.write_bytes(compiled)
            self.booster = load_compiled(str(lib), self.booster, compiled_sha256)

    def __call__(self, batch: "pd.DataFrame") -> "pd.DataFrame":
        import pandas as pd

        raw = self.booster.inplace_predict(batch.drop(columns=[_POS]).to_numpy(np.float32))
        if self.multiclass:
            score, klass = raw.max(axis=1).astype("float64"), raw.argmax(axis=1).astype("int64")
        else:
            score, klass = raw.astype("float64"), np.full(len(raw), -1, dtype="int64")
        return pd.DataFrame({_POS: batch[_POS].to_numpy(), "score": score, "klass": klass})


def scorer_args(model: dict[str, Any], multiclass: bool) -> tuple[Any, ...]:
    """``_Scorer``'s arguments: the version's UBJ bytes (and its compiled library's, with the
    sha256 the deploy checked), read here on the driver."""
    lib = model.get("compiled_path")
    return (Path(model["model_path"]).read_bytes(), multiclass,
            Path(lib).read_bytes() if lib else None, model.get("compiled_sha256"))


def _dataset(frame: "pd.DataFrame", blocks: int) -> Any:
    """``frame`` as a Ray Dataset of ``blocks`` blocks, built without a task.

    ``ray.data.from_pandas`` (and ``from_arrow`` and ``read_parquet``) computes each block's
    metadata in a remote task that asks for a whole CPU, which never starts on a head whose
    served models leave less than one CPU free: the job hung. The metadata is computed here, on
    the driver, and the blocks go into the object store as ``from_pandas_refs`` puts them (the
    same logical operator, Ray 2.60's own), so the only CPUs the job asks for are its scoring
    workers' ``batch.cpus_per_worker``.
    """
    import ray
    from ray.data._internal.logical.interfaces import LogicalPlan
    from ray.data._internal.logical.operators.from_operators import FromPandas
    from ray.data._internal.stats import DatasetStats
    from ray.data._internal.util import get_table_block_metadata_schema
    from ray.data.context import DataContext
    from ray.data.dataset import MaterializedDataset

    parts = [frame.iloc[i:j] for i, j in _bounds(len(frame), blocks)]
    meta = [get_table_block_metadata_schema(p) for p in parts]
    context = DataContext.get_current().copy()
    plan = LogicalPlan(FromPandas([ray.put(p) for p in parts], meta), context)
    return MaterializedDataset(plan, context, DatasetStats(metadata={"FromPandas": meta}, parent=None))


def _bounds(rows: int, blocks: int) -> list[tuple[int, int]]:
    """``blocks`` contiguous ``(start, stop)`` row ranges covering ``rows`` (at least one)."""
    edges = np.linspace(0, rows, max(1, min(blocks, rows)) + 1).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def answers(contract: Any, score: np.ndarray, klass: np.ndarray) -> tuple[Any, Any]:
    """Predictions and probabilities, as the online API answers them, from the workers' numbers."""
    if contract.task == "binary":
        labels = contract.labels
        if labels is None:
            return (score >= 0.5).astype("int64"), score
        names = np.array([labels.negative, labels.positive], dtype=object)
        return names[(score >= labels.threshold).astype("int64")], score
    if contract.task == "multiclass":
        return klass, score
    return score, np.full(len(score), np.nan)


def score(ctx: "RunContext", rows: "pd.DataFrame", model: dict[str, Any]) -> "pd.DataFrame":
    """Ray Data ``map_batches`` over ``rows`` with ``batch.concurrency`` scoring workers; ``rows``
    with their answers, in order (each row exactly once, or nothing)."""
    import pandas as pd

    from framework.backends.ray_runtime import ray_for
    from framework.compile.contract import parse

    from framework.backends.ray_train.dataset import feature_matrix

    b, names = ctx.recipe.batch, ctx.recipe.feature_names()
    contract = parse(model["contract"])
    categories = {f.name: f.categories or [] for f in contract.features if f.categorical}
    lacking = [n for n in contract.names if n not in rows.columns]  # an older major contract's
    if lacking:
        rows = rows.assign(**dict.fromkeys(lacking, None))
    x = feature_matrix(rows, contract.names, categories)
    absent = rows[contract.names].isna().to_numpy() | np.isnan(x)
    work = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    work[_POS] = np.arange(len(rows), dtype="int64")
    with ray_for(ctx.recipe, ctx.workspace, ctx.progress):
        require_free_cpus(b.cpus_per_worker * b.concurrency, "batch",
                          "batch.concurrency x batch.cpus_per_worker",
                          "Serving holds the rest. Lower batch.cpus_per_worker or batch.concurrency, or "
                          "free CPUs (`loom status` lists what is served; `loom destroy recipe=NAME`).")
        blocks = min(-(-len(work) // b.batch_size), 4 * b.concurrency)
        ds = _dataset(work, blocks).map_batches(
            _Scorer, fn_constructor_args=scorer_args(model, contract.task == "multiclass"),
            batch_size=b.batch_size, concurrency=b.concurrency, num_cpus=b.cpus_per_worker,
            batch_format="pandas")
        parts, done, last = [], 0, time.perf_counter()
        started = last
        for part in ds.iter_batches(batch_format="pandas", batch_size=None):
            parts.append(part)
            done += len(part)
            if time.perf_counter() - last >= PROGRESS_EVERY_S:
                last = time.perf_counter()
                ctx.progress(f"batch: {done:,} / {len(rows):,} rows, "
                             f"{done / (last - started):,.0f} rows/s")
    got = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({_POS: []})
    pos = got[_POS].to_numpy()
    order = np.argsort(pos, kind="stable")
    if len(pos) != len(rows) or not np.array_equal(pos[order], np.arange(len(rows))):
        raise BackendError(f"batch: {len(rows)} rows in, {len(pos)} scored; nothing was written.")
    got = got.iloc[order]
    complete = ~absent.any(axis=1)
    prediction, probability = answers(contract, got["score"].to_numpy(), got["klass"].to_numpy())
    if ctx.recipe.serving.missing_features == "reject":  # as the API answers 422 for them
        prediction = np.where(complete, prediction.astype(object), None)
        probability = np.where(complete, probability, np.nan)
    out = rows.drop(columns=[n for n in {*names, *lacking} if n in rows.columns]).reset_index(drop=True)
    out["prediction"], out["probability"] = prediction, probability
    out["model_version"], out["contract"] = str(model["version"]), contract.major
    missing = np.full(len(rows), "", dtype=object)
    feature = np.array(contract.names, dtype=object)
    for i in np.flatnonzero(~complete):  # usually none: no per-row work for complete rows
        missing[i] = ",".join(feature[absent[i]])  # null, or a category the version never saw
    out["missing_features"] = missing
    return out


def _write(scored: "pd.DataFrame", req: BatchRequest, model: dict[str, Any], fingerprint: str,
           elapsed_s: float) -> dict[str, Any]:
    missing = scored[scored["missing_features"] != ""]
    req.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = req.output.with_suffix(".tmp")
    scored.to_parquet(tmp, index=False)
    tmp.replace(req.output)
    missing_path = req.output.with_name(req.output.stem + ".missing.parquet")
    if len(missing):
        missing[[ROW_ID, "missing_features"]].to_parquet(missing_path, index=False)
    else:
        missing_path.unlink(missing_ok=True)
    return {"output": str(req.output), "rows": int(len(scored)), "missing": int(len(missing)),
            "missing_file": str(missing_path) if len(missing) else None,
            "model_version": model["version"], "fingerprint": fingerprint,
            "elapsed_s": round(elapsed_s, 2), "rows_per_s": len(scored) / max(elapsed_s, 1e-9),
            "at": now_text()}


def _fingerprint(ctx: "RunContext", req: BatchRequest, model: dict[str, Any]) -> str:
    from framework.backends.data_files import file_sha256, fingerprint_sources

    inputs = {"input": file_sha256(req.input) if req.input.is_file() else None,
              "sources": fingerprint_sources(ctx.recipe, ctx.project_dir),
              "version": model["version"], "as_of": req.as_of,
              "features": ctx.recipe.feature_names(), "batch": ctx.recipe.batch.timestamp_field}
    return "sha256:" + hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _recorded(ctx: "RunContext", output: Path) -> dict[str, Any]:
    jobs = WorkspaceState(ctx.workspace).recipe(ctx.recipe.name).get("batch_jobs") or {}
    return dict(jobs.get(str(output)) or {})


def _record(ctx: "RunContext", output: Path, summary: dict[str, Any]) -> None:
    """The job in the workspace state (so an unchanged rerun is skipped) and as an MLflow run."""
    with WorkspaceState(ctx.workspace).recipe_transaction(ctx.recipe.name) as section:
        section.setdefault("batch_jobs", {})[str(output)] = summary
    try:
        _log_run(ctx, summary)
    except Exception as exc:  # MLflow down: the output is written; say the record is missing
        ctx.progress(f"warning: the batch job was not recorded in MLflow ({type(exc).__name__}: {exc})")


def _log_run(ctx: "RunContext", summary: dict[str, Any]) -> None:
    from framework.backends.model_registry.tracking import experiment_id, recipe_client

    client = recipe_client(ctx.recipe, ctx.workspace)
    exp = experiment_id(client, ctx.recipe, ctx.workspace)
    run = client.create_run(exp, run_name=f"{ctx.recipe.name}-batch", tags={
        "loom.address": "batch", "loom.batch.output": summary["output"],
        "loom.batch.fingerprint": summary["fingerprint"], "loom.model_version": summary["model_version"],
        "loom.batch.predictor": (summary.get("predictor") or {}).get("name", "xgboost")})
    for key in ("rows", "missing", "rows_per_s", "elapsed_s"):
        client.log_metric(run.info.run_id, key, float(summary[key]))
    client.set_terminated(run.info.run_id)
