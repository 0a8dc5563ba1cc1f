"""Reading the prediction log back: the rows of a time window as one pandas frame."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.errors import DataError
from framework.serving.predlog import column_names, parquet_files

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_window(text: str | None) -> float | None:
    """Seconds in ``30m``, ``1h``, ``7d``, ``2w`` (None for ``all`` or nothing: the whole log).

    Raises:
        DataError: any other text.
    """
    if text is None or text.strip().lower() in ("", "all"):
        return None
    m = _WINDOW.match(text.lower())
    if not m or float(m.group(1)) <= 0:
        raise DataError(f"--window: Got {text!r}. A window is a number and a unit: 90s, 30m, 1h, 7d, "
                        "2w, or 'all'.")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


@dataclass
class LogWindow:
    """What a window of the log holds: its rows and where they came from."""

    directory: Path
    frame: Any  # pandas.DataFrame, one row per logged answer; feature columns by feature name
    files: int
    bytes: int
    window_s: float | None
    start: float | None  # epoch seconds; None for the whole log
    end: float

    @property
    def rows(self) -> int:
        return int(len(self.frame))

    def about(self) -> dict[str, Any]:
        """JSON-able facts about the window."""
        t = self.frame["time"] if self.rows else None
        return {"directory": str(self.directory), "files": self.files, "bytes": self.bytes,
                "window_s": self.window_s, "rows": self.rows,
                "first": t.min().isoformat() if t is not None else None,
                "last": t.max().isoformat() if t is not None else None}


def read_window(directory: Path, window_s: float | None, entity_keys: list[str],
                feature_names: list[str], now: float | None = None) -> LogWindow:
    """The log's rows whose ``time`` falls within ``window_s`` before ``now`` (all rows: None).

    Day folders wholly before the window are not opened. Files that a replica is writing are never
    seen (they are renamed into place whole); a file that cannot be read is skipped.
    Entity and feature columns are renamed back from the log's names (``feature.score`` -> ``score``).
    """
    import pandas as pd

    end = time.time() if now is None else now
    start = None if window_s is None else end - window_s
    first_day = None if start is None else time.strftime("%Y-%m-%d", time.gmtime(start))
    files = parquet_files(directory)
    frames, used, size = [], 0, 0
    for _, nbytes, path in files:
        if first_day is not None and path.parent.name[len("date="):] < first_day:
            continue
        frame = _read(path)
        if frame is None:
            continue
        used, size = used + 1, size + nbytes
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True, sort=False) if frames else _empty()
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    if start is not None:
        frame = frame[frame["time"] >= pd.Timestamp(start, unit="s", tz="UTC")]
    frame = frame[frame["time"] <= pd.Timestamp(end, unit="s", tz="UTC")]
    entities, features = column_names(entity_keys, feature_names)
    back = {col: name for name, col in {**entities, **features}.items() if col != name}
    frame = frame.rename(columns=back).sort_values("time", kind="stable").reset_index(drop=True)
    return LogWindow(directory, frame, used, size, window_s, start, end)


def _read(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pandas()
    except (OSError, ValueError):  # deleted by a replica's trim meanwhile, or not a parquet file
        return None


def _empty() -> Any:
    import pandas as pd

    return pd.DataFrame({"request_id": pd.Series(dtype=str), "time": pd.Series(dtype="datetime64[ns, UTC]"),
                         "model_id": pd.Series(dtype=str), "version": pd.Series(dtype=str),
                         "degraded": pd.Series(dtype=bool), "fallback": pd.Series(dtype=str),
                         "prediction": pd.Series(dtype=str), "score": pd.Series(dtype=float)})


def no_log_message(directory: Path, model_id: str, window_s: float | None) -> str:
    """What to tell someone whose log holds nothing (yet, or in the window)."""
    if not parquet_files(directory):
        return (f"No prediction log yet for model '{model_id}' in {directory}. Replicas write it "
                "when monitoring.log.enabled is true (the default) and sample_rate > 0: send some "
                "traffic and wait monitoring.log.flush_s seconds.")
    return (f"The prediction log of model '{model_id}' ({directory}) has no rows in the last "
            f"{_human(window_s)}. Widen --window (e.g. --window 7d, or --window all).")


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "window"
    for unit in ("w", "d", "h", "m"):
        if seconds >= _UNIT_S[unit] and seconds % _UNIT_S[unit] == 0:
            return f"{int(seconds // _UNIT_S[unit])}{unit}"
    return f"{seconds:g}s"
