"""The prediction log: sampled request and response records a replica writes as parquet files.

A replica calls ``PredictionLogWriter.record`` once per answered row, on its event loop: a sampling
decision and an append to a buffer, no I/O. A background thread writes the buffer every
``flush_s`` as one parquet file under ``<directory>/date=YYYY-MM-DD/`` and then deletes the oldest
files of the whole directory (every replica's) until it is under ``max_bytes``. A failed write is
logged and its rows dropped: the log never reaches a request. Headers, API keys and request bodies
are never recorded; only the fields ``record`` names.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Columns every record has, in file order; entity keys and features follow, then prediction, score.
HEAD_COLUMNS = ("request_id", "time", "model_id", "version", "degraded", "fallback")
TAIL_COLUMNS = ("prediction", "score", "probabilities")
RESERVED = frozenset(HEAD_COLUMNS + TAIL_COLUMNS)
#: Records a replica holds between flushes at most; more are counted in ``dropped`` (a stalled disk
#: must not grow the replica's memory without bound).
MAX_BUFFERED = 200_000
SUFFIX = ".parquet"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def log_dir(workspace: str | Path, model_id: str) -> Path:
    """Where a model's prediction log lives by default: ``<workspace>/predictions/<model_id>``."""
    return Path(workspace) / "predictions" / safe_name(model_id)


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9_.-]`` replaced, fit for a file name."""
    return _UNSAFE.sub("_", str(text)).strip(".") or "_"


def column_names(entity_keys: list[str], feature_names: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The log's column of every entity key and feature: its own name, unless that is one of the
    record's columns (``score``, ``time``, ...) or taken by an entity key: then ``feature.<name>``
    (or ``entity.<name>``). The reader maps them back with the same function."""
    entities = {k: (f"entity.{k}" if k in RESERVED else k) for k in entity_keys}
    taken = RESERVED | set(entities.values())
    features = {f: (f"feature.{f}" if f in taken else f) for f in feature_names}
    return entities, features


def parquet_files(directory: str | Path) -> list[tuple[float, int, Path]]:
    """Every finished log file under ``directory``: (mtime, size, path), oldest first."""
    out: list[tuple[float, int, Path]] = []
    try:
        parts = list(os.scandir(directory))
    except OSError:
        return out
    for part in parts:
        if not (part.is_dir() and part.name.startswith("date=")):
            continue
        try:
            for entry in os.scandir(part.path):
                if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                    st = entry.stat()
                    out.append((st.st_mtime, st.st_size, Path(entry.path)))
        except OSError:  # a date folder another replica just removed
            continue
    out.sort()
    return out


class PredictionLogWriter:
    """Samples answered rows into a buffer; a thread writes it as parquet and keeps the log bounded."""

    def __init__(self, directory: str, model_id: str, replica: str, entity_keys: list[str],
                 feature_names: list[str], sample_rate: float, max_bytes: int, flush_s: float,
                 seed: int | None = None, feature_types: dict[str, str] | None = None):
        self.directory = Path(directory)
        self.model_id = model_id
        self.replica = safe_name(replica)
        self.entity_keys = list(entity_keys)
        self.feature_names = list(feature_names)
        # One type per column in every file, so the files read back as one dataset: categorical
        # ("string") features as text, the rest as float64; entity keys as text.
        self.categorical = {n for n, t in (feature_types or {}).items() if t == "string"}
        self._typed = feature_types is not None
        self.sample_rate = float(sample_rate)
        self.max_bytes = int(max_bytes)
        self.flush_s = float(flush_s)
        self.entity_columns, self.feature_columns = column_names(self.entity_keys, self.feature_names)
        self._random = random.Random(seed).random
        # deque: append (event loop) and popleft (flush thread) are atomic, so no lock on the hot path.
        self._buffer: collections.deque[tuple] = collections.deque()
        self._write_lock = threading.Lock()
        self._seq = 0
        self._token = os.urandom(3).hex()  # two writers of one process never share a file name
        self.written = 0  #: rows written to files
        self.dropped = 0  #: rows sampled but lost (full buffer, failed write)
        self.deleted = 0  #: files removed to keep the log under max_bytes
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"loom-predlog-{self.replica}", daemon=True)
        self._thread.start()

    # -- the hot path ------------------------------------------------------------------------------

    def record(self, *, request_id: str, version: str | None, entities: dict, features: dict[str, Any],
               prediction: Any, score: float | None, degraded: bool, fallback: str | None,
               at: float, probabilities: list[float] | None = None) -> None:
        """Keep one answered row with probability ``sample_rate``; never raises, never does I/O."""
        if self._random() >= self.sample_rate:
            return
        try:
            if len(self._buffer) >= MAX_BUFFERED:
                self.dropped += 1
                return
            # Shallow copies: the caller may reuse its dicts after the answer is sent.
            self._buffer.append((request_id, at, version, degraded, fallback, dict(entities),
                                 dict(features), prediction, score, probabilities))
        except Exception:  # noqa: BLE001 - the log must never fail a request
            self.dropped += 1

    # -- writing -------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what is buffered as one parquet file per day, then trim the log; never raises."""
        with self._write_lock:
            n = len(self._buffer)
            if n == 0:
                return
            rows = [self._buffer.popleft() for _ in range(n)]
            try:
                by_day: dict[str, list[tuple]] = {}
                for row in rows:
                    by_day.setdefault(time.strftime("%Y-%m-%d", time.gmtime(row[1])), []).append(row)
                newest = None
                for day, day_rows in sorted(by_day.items()):
                    newest = self._write(day, day_rows)
                    self.written += len(day_rows)
                    n -= len(day_rows)
                self._trim(newest)
                if self._failing:
                    log.warning("Prediction log %s: writing again.", self.directory)
                self._failing = False
            except Exception as exc:  # noqa: BLE001 - disk full, permissions: logged and dropped
                self.dropped += n
                if not self._failing:  # once per outage, not once per flush
                    log.warning("Prediction log %s: could not write %d rows (%s: %s); dropping them "
                                "until a write succeeds.", self.directory, len(rows),
                                type(exc).__name__, exc)
                self._failing = True

    def close(self) -> None:
        """Stop the flush thread and write what is left."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(5.0, self.flush_s))
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def table(self, rows: list[tuple]) -> Any:
        """The pyarrow table of ``rows`` in the log's schema."""
        import pyarrow as pa

        cols: dict[str, Any] = {
            "request_id": pa.array([str(r[0]) for r in rows], pa.string()),
            "time": pa.array([int(r[1] * 1_000_000) for r in rows], pa.timestamp("us", tz="UTC")),
            "model_id": pa.array([self.model_id] * len(rows), pa.string()),
            "version": pa.array([None if r[2] is None else str(r[2]) for r in rows], pa.string()),
            "degraded": pa.array([bool(r[3]) for r in rows], pa.bool_()),
            "fallback": pa.array([None if r[4] is None else str(r[4]) for r in rows], pa.string()),
        }
        for key, col in self.entity_columns.items():
            values = [r[5].get(key) for r in rows]
            cols[col] = (pa.array([None if v is None else str(v) for v in values], pa.string())
                         if self._typed else _column(values))
        for name, col in self.feature_columns.items():
            values = [r[6].get(name) for r in rows]
            if not self._typed:
                cols[col] = _column(values)
            elif name in self.categorical:
                cols[col] = pa.array([None if v is None else str(v) for v in values], pa.string())
            else:
                cols[col] = pa.array([_float(v) for v in values], pa.float64())
        cols["prediction"] = pa.array([None if r[7] is None else str(r[7]) for r in rows], pa.string())
        cols["score"] = pa.array([_float(r[8]) for r in rows], pa.float64())
        # Every class's probability (multiclass answers; null otherwise): AUC and log loss.
        cols["probabilities"] = pa.array(
            [None if r[9] is None else [_float(v) for v in r[9]] for r in rows],
            pa.list_(pa.float64()))
        return pa.table(cols)

    def _write(self, day: str, rows: list[tuple]) -> Path:
        import pyarrow.parquet as pq

        folder = self.directory / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = folder / f"{self.replica}-{stamp}-{self._token}-{self._seq:06d}{SUFFIX}"
        tmp = folder / f".{path.name}.tmp"  # readers skip dot files: they never see half a file
        try:
            pq.write_table(self.table(rows), tmp, compression="zstd")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def _trim(self, newest: Path | None) -> None:
        """Delete the oldest files (every replica's) until the log is under ``max_bytes``."""
        files = parquet_files(self.directory)
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= self.max_bytes:
                break
            if path == newest:
                log.warning("Prediction log %s: one flush (%d bytes) is larger than max_bytes (%d); "
                            "raise monitoring.log.max_mb or lower sample_rate.", self.directory, size,
                            self.max_bytes)
            try:
                path.unlink()
                self.deleted += 1
            except FileNotFoundError:  # another replica trimmed it first
                pass
            total -= size
            try:
                path.parent.rmdir()  # only when the day is empty
            except OSError:
                pass


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _column(values: list[Any]) -> Any:
    """Numbers as served (int64 or float64; bools as 0/1), anything else as text; ``None`` stays
    null (a missing feature)."""
    import pyarrow as pa

    try:
        arr = pa.array(values, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        arr = None
    if arr is not None and (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)
                            or pa.types.is_string(arr.type)):
        return arr
    if arr is not None and pa.types.is_boolean(arr.type):
        return arr.cast(pa.int64())
    if arr is not None and pa.types.is_null(arr.type):
        return arr.cast(pa.float64())
    return pa.array([None if v is None else str(v) for v in values], pa.string())
