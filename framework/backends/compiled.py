"""Model optimization: a registered XGBoost model compiled to native code (Treelite + TL2cgen).

``serving.predictor: treelite | auto`` compiles each version the deploy step puts in a slot, checks
that the library's predictions equal XGBoost's before anything uses it, and logs it beside the
version's UBJ in MLflow (``loom/treelite-model.so`` of its run), so a later deploy, another
machine's replicas or ``loom optimize`` reuse it instead of compiling again. ``auto`` also times both
at one row and keeps the faster. ``loom optimize`` prints the whole table.

Rows for the check: the version's training profile gives each feature's decile edges; the check
scores every edge itself (where a split's ``<`` decides), points between and beyond them, and
missing values, so a library that disagrees anywhere a split sits is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from framework.errors import BackendError

if TYPE_CHECKING:
    from framework.backends.base import RunContext

#: The largest difference allowed between XGBoost's prediction and the library's, per value.
TOLERANCE = 1e-5
#: Batch sizes ``loom optimize`` times (rows per call).
BATCH_SIZES = (1, 32, 1_000, 100_000)
#: Written beside the library: what built it (a library is only reused by the same build).
BUILD_FILE = "treelite-build.json"


def build_info() -> dict[str, str]:
    from importlib import metadata

    return {"treelite": metadata.version("treelite"), "tl2cgen": metadata.version("tl2cgen"),
            "machine": platform.machine(), "system": platform.system()}


def compile_model(model_path: str | Path, out_dir: str | Path) -> Path:
    """Compile the UBJ at ``model_path`` into ``out_dir/treelite-model.so``; return its path.

    Raises:
        BackendError: no C compiler here, or Treelite cannot read the model.
    """
    import tl2cgen
    import treelite
    import xgboost

    from framework.serving.compiled import LIB_FILE

    if shutil.which("gcc") is None:
        raise BackendError("serving.predictor: compiling the model needs a C compiler (gcc) on this "
                           "machine. Install it (apt-get install gcc) or set serving.predictor: xgboost.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    booster = xgboost.Booster(model_file=str(model_path))
    try:
        model = treelite.frontend.from_xgboost(booster)
    except Exception as exc:  # noqa: BLE001 - treelite.TreeliteError and friends
        raise BackendError(f"serving.predictor: Treelite cannot read {model_path} ({exc}); set "
                           "serving.predictor: xgboost.") from exc
    with tempfile.TemporaryDirectory(dir=out) as work, \
            contextlib.redirect_stdout(io.StringIO()):  # TL2cgen prints its progress to stdout
        lib = Path(work) / LIB_FILE
        tl2cgen.export_lib(model, toolchain="gcc", libpath=str(lib), nthread=1,
                           params={"parallel_comp": max(1, min(8, os.cpu_count() or 1))})
        lib.replace(out / LIB_FILE)
    (out / BUILD_FILE).write_text(json.dumps(build_info()), encoding="utf-8")
    return out / LIB_FILE


def load(lib: str | Path, booster: Any) -> Any:
    from framework.serving.compiled import load_compiled

    return load_compiled(str(lib), booster)


def check_rows(profile: dict[str, Any] | None, names: list[str], seed: int = 0) -> np.ndarray:
    """Rows that put every feature on and around each of its profile's edges, plus missing values
    and points beyond the observed range (float32, in ``names`` order)."""
    rng = np.random.default_rng(seed)
    n = 4_000
    columns = []
    for name in names:
        edges = np.asarray(((profile or {}).get("features", {}).get(name) or {}).get("edges") or [],
                           dtype=np.float64)
        if edges.size == 0:
            edges = np.array([-3.0, 0.0, 3.0])
        lo, hi = float(edges.min()), float(edges.max())
        span = max(hi - lo, 1.0)
        pool = np.concatenate([edges, np.nextafter(edges.astype(np.float32), np.float32(np.inf)),
                               rng.uniform(lo - span, hi + span, 64), [np.nan]])
        columns.append(rng.choice(pool, n))
    return np.column_stack(columns).astype(np.float32)


def check_equal(booster: Any, compiled: Any, rows: np.ndarray, what: str) -> float:
    """The largest difference between the two on ``rows``; BackendError beyond ``TOLERANCE``."""
    want = np.asarray(booster.inplace_predict(rows), dtype=np.float64)
    got = np.asarray(compiled.inplace_predict(rows), dtype=np.float64)
    if want.shape != got.shape:
        raise BackendError(f"serving.predictor: the compiled {what} answers in shape {got.shape}, "
                           f"XGBoost in {want.shape}; refused. Set serving.predictor: xgboost.")
    diff = float(np.nanmax(np.abs(want - got))) if want.size else 0.0
    if not diff <= TOLERANCE:
        worst = int(np.nanargmax(np.abs(want - got).reshape(len(rows), -1).max(axis=1)))
        raise BackendError(
            f"serving.predictor: the compiled {what} does not predict what XGBoost predicts "
            f"(largest difference {diff:.3g} > {TOLERANCE:g}, on row {rows[worst].tolist()}); "
            "it is not used. Set serving.predictor: xgboost.")
    return diff


def time_per_row(model: Any, rows: np.ndarray, budget_s: float = 0.3) -> float:
    """Microseconds per row of ``model.inplace_predict(rows)``: the best of repeated calls within
    about ``budget_s`` (at least three)."""
    model.inplace_predict(rows)  # warm
    best, spent, calls = float("inf"), 0.0, 0
    while calls < 3 or spent < budget_s:
        started = time.perf_counter()
        model.inplace_predict(rows)
        took = time.perf_counter() - started
        best, spent, calls = min(best, took), spent + took, calls + 1
    return best / len(rows) * 1e6


def timing_table(booster: Any, compiled: Any, names: list[str], profile: dict | None,
                 sizes: tuple[int, ...] = BATCH_SIZES, budget_s: float = 0.3) -> list[dict[str, Any]]:
    """Per batch size: µs per row of XGBoost's ``inplace_predict`` and of the library, and the
    speed-up (XGBoost's time over the library's)."""
    pool = check_rows(profile, names, seed=1)
    table = []
    for size in sizes:
        rows = pool[np.arange(size) % len(pool)]
        xgb_us, lib_us = time_per_row(booster, rows, budget_s), time_per_row(compiled, rows, budget_s)
        table.append({"rows": size, "xgboost_us_per_row": round(xgb_us, 3),
                      "treelite_us_per_row": round(lib_us, 3), "speedup": round(xgb_us / lib_us, 2)})
    return table


def version_library(tracking_uri: str, model: dict[str, Any], cache_dir: Path) -> Path:
    """The checked library of registered version ``model`` (``registry.register`` outputs): from
    ``cache_dir``, else from its run in MLflow, else compiled here, checked and logged there.

    Raises:
        BackendError: it cannot be built, or it predicts differently from XGBoost.
    """
    import xgboost

    from framework.backends.model_registry.versions import download_run_file, log_run_files
    from framework.serving.compiled import LIB_FILE

    lib, build = cache_dir / LIB_FILE, cache_dir / BUILD_FILE
    run_id = model.get("run_id")
    if not _built_here(lib, build) and run_id:
        for name in (BUILD_FILE, LIB_FILE):
            download_run_file(tracking_uri, run_id, cache_dir, name)
    booster = xgboost.Booster(model_file=str(model["model_path"]))
    fresh = not _built_here(lib, build)
    if fresh:
        compile_model(model["model_path"], cache_dir)
    profile = _profile(model.get("profile_path"))
    names = (model.get("contract") or {}).get("features") or []
    names = [f["name"] if isinstance(f, dict) else str(f) for f in names] or \
        [f"f{i}" for i in range(booster.num_features())]
    check_equal(booster, load(lib, booster), check_rows(profile, names),
                f"model of version {model['version']}")
    if fresh and run_id:
        log_run_files(tracking_uri, run_id, [lib, build])
    return lib


def _built_here(lib: Path, build: Path) -> bool:
    try:
        return lib.is_file() and json.loads(build.read_text(encoding="utf-8")) == build_info()
    except (OSError, ValueError):
        return False


def _profile(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def optimize(tracking_uri: str, model: dict[str, Any],
             progress: Any = lambda line: None) -> dict[str, Any]:
    """``loom optimize`` for one registered version: its checked library, the timing table and
    the faster predictor per path (one row: what ``serving.predictor: auto`` picks for replicas;
    100,000 rows per call: what ``batch.predictor: auto`` picks for a ``loom batch`` whose
    ``batch.batch_size`` is that large; it times the recipe's own batch size)."""
    import xgboost

    lib = version_library(tracking_uri, model, Path(model["model_path"]).parent)
    booster = xgboost.Booster(model_file=str(model["model_path"]))
    booster.set_param({"nthread": 1})
    names = [f"f{i}" for i in range(booster.num_features())]
    progress("timing XGBoost's inplace_predict and the compiled model, one thread each")
    table = timing_table(booster, load(lib, booster), names, _profile(model.get("profile_path")))
    by_rows = {row["rows"]: row for row in table}
    pick = {path: ("treelite" if by_rows[rows]["speedup"] > 1 else "xgboost")
            for path, rows in (("online", 1), ("batch", max(by_rows)))}
    return {"model": model["model_name"], "version": model["version"], "library": str(lib),
            "tolerance": TOLERANCE, "table": table, "auto_picks": pick}


def for_deploy(ctx: "RunContext", model: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The predictor of the version a deploy puts in a slot (``serving.predictor``; ``auto``
    times one row per call, what a replica mostly scores)."""
    return choose(ctx, model, ctx.recipe.serving.predictor, "serving.predictor", rows=1)


#: The most rows per call ``batch.predictor: auto`` times (a batch job's calls are ``batch_size``).
BATCH_TIMING_ROWS = 100_000


def for_batch(ctx: "RunContext", model: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The predictor of a ``loom batch`` job (``batch.predictor``; ``auto`` times
    ``batch.batch_size`` rows per call, at most ``BATCH_TIMING_ROWS``)."""
    rows = min(ctx.recipe.batch.batch_size, BATCH_TIMING_ROWS)
    return choose(ctx, model, ctx.recipe.batch.predictor, "batch.predictor", rows=rows)


def choose(ctx: "RunContext", model: dict[str, Any], choice: str, key: str,
           rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The registered model with its compiled library (``compiled_path``, ``compiled_sha256``)
    when ``choice`` asks for one, and what was chosen (with ``auto``'s timings at ``rows`` rows
    per call).

    Raises:
        BackendError: ``treelite`` and the library cannot be built or predicts differently from
            XGBoost (``auto`` then keeps XGBoost and says why).
    """
    if choice == "xgboost":
        return model, {"name": "xgboost", "asked": choice}
    import xgboost

    from framework.backends.model_registry.tracking import tracking_uri

    try:
        lib = version_library(tracking_uri(ctx.recipe, ctx.workspace), model,
                              Path(model["model_path"]).parent)
    except BackendError as exc:
        if choice == "treelite":
            raise
        ctx.progress(f"{key} auto: keeping XGBoost for version {model['version']} ({exc})")
        return model, {"name": "xgboost", "asked": choice, "reason": str(exc)[:300]}
    from framework.serving.compiled import sha256_of

    with_lib = {**model, "compiled_path": str(lib), "compiled_sha256": sha256_of(str(lib))}
    if choice == "treelite":
        ctx.progress(f"{key}: version {model['version']} compiled (Treelite), checked equal to XGBoost")
        return with_lib, {"name": "treelite", "asked": choice}
    booster = xgboost.Booster(model_file=str(model["model_path"]))
    booster.set_param({"nthread": 1})
    names = [f"f{i}" for i in range(booster.num_features())]
    (row,) = timing_table(booster, load(lib, booster), names, _profile(model.get("profile_path")),
                          sizes=(rows,), budget_s=0.2)
    faster = "treelite" if row["speedup"] > 1 else "xgboost"
    ctx.progress(f"{key} auto: {rows:,} row(s) per call {row['xgboost_us_per_row']:.2f} us/row with "
                 f"XGBoost, {row['treelite_us_per_row']:.2f} us/row compiled: {faster}")
    chosen = with_lib if faster == "treelite" else model
    timing = {"one_row_us": row} if rows == 1 else {"timing": row}
    return chosen, {"name": faster, "asked": choice, **timing}
