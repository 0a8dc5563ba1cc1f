"""What data checks measure in a source file: parquet metadata and row-group statistics, or columns.

``SourceFacts`` answers each measurement from the parquet footer when it can (row count, null
counts, numeric and timestamp min/max: no data page is read) and reads only the columns it must
otherwise (CSV, missing statistics, uniqueness and allowed values, or ``use_statistics=False``).
It uses pyarrow only, and never ``pa.array``/``pa.scalar`` on Python values or ``to_numpy``:
those import pandas (~0.3 s), which ``loom plan`` does not otherwise pay.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Seconds per unit of an Arrow timestamp.
_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@dataclass(frozen=True)
class Measured:
    """A measurement and where it came from: ``statistics`` (the parquet footer) or ``data``."""

    value: Any
    how: str


class SourceFacts:
    """Measurements of one source file, each computed once.

    Args:
        path: the parquet or CSV file.
        fmt: ``parquet`` or ``csv``.
        data_columns: the columns a CSV's measurements may need (it is parsed once, for all of them).
        use_statistics: answer from parquet statistics where they are complete (``loom plan``);
            False reads the columns themselves (the check before training).
    """

    def __init__(self, path: Path, fmt: str, data_columns: list[str], use_statistics: bool,
                 shown: str | None = None) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        self.path, self.fmt = Path(path), fmt
        #: The path as the recipe writes it, for messages.
        self.shown = shown or str(path)
        self._data_columns = list(dict.fromkeys(data_columns))
        self._table: Any = None
        self._columns: dict[str, Any] = {}
        if fmt == "parquet":
            self._file = pq.ParquetFile(self.path)
            self.schema = self._file.schema_arrow
            self._meta = self._file.metadata if use_statistics else None
        else:
            self._file = self._meta = None
            with pcsv.open_csv(self.path) as reader:
                self.schema = reader.schema

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def arrow_type(self, column: str) -> Any:
        """The column's Arrow type (a dictionary column's value type)."""
        import pyarrow.types as pat

        kind = self.schema.field(column).type
        return kind.value_type if pat.is_dictionary(kind) else kind

    def num_rows(self) -> Measured:
        if self._file is not None:  # the footer's row count is exact, statistics or not
            return Measured(self._file.metadata.num_rows, "metadata")
        return Measured(self._csv().num_rows, "data")

    def null_count(self, column: str) -> Measured:
        stats = self._statistics(column)
        if stats is not None and all(s.has_null_count for s in stats):
            return Measured(sum(s.null_count for s in stats), "statistics")
        return Measured(self.column(column).null_count, "data")

    def min_max(self, column: str) -> Measured:
        """``(min, max)`` of the non-null values as floats (timestamps: epoch seconds); None when all null."""
        import pyarrow.types as pat

        kind = self.arrow_type(column)
        stats = self._statistics(column) if (pat.is_integer(kind) or pat.is_floating(kind)
                                             or pat.is_timestamp(kind)) else None
        if stats is not None and all(s.has_min_max for s in stats if s.num_values):
            present = [s for s in stats if s.num_values]
            if not present:
                return Measured(None, "statistics")
            if pat.is_timestamp(kind):
                scale = self._stored_unit_s(column)
                if scale is None:
                    return Measured(self._data_min_max(column), "data")
                return Measured((min(s.min_raw for s in present) * scale,
                                 max(s.max_raw for s in present) * scale), "statistics")
            return Measured((float(min(s.min for s in present)), float(max(s.max for s in present))),
                            "statistics")
        return Measured(self._data_min_max(column), "data")

    def outside(self, column: str, low: float | None, high: float | None) -> int:
        """How many non-null values lie below ``low`` or above ``high`` (reads the column)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        values = self.column(column).cast(pa.float64())
        count = 0
        if low is not None:
            count += pc.sum(pc.less(values, _float(low))).as_py() or 0
        if high is not None:
            count += pc.sum(pc.greater(values, _float(high))).as_py() or 0
        return count

    def value_counts(self, column: str) -> list[tuple[Any, int]]:
        """Each distinct non-null value with its row count (reads the column)."""
        import pyarrow.compute as pc

        counted = pc.value_counts(self.column(column).drop_null()).to_pylist()
        return [(item["values"], item["counts"]) for item in counted]

    def duplicates(self, columns: list[str]) -> tuple[int, dict[str, Any] | None]:
        """Rows whose key (``columns`` together) an earlier row already has, and one such key.

        A key with a null in it is never a duplicate (nulls are distinct, as in SQL).
        """
        import pyarrow.compute as pc

        table = self.key_table(columns)
        n = table.num_rows
        if n < 2:
            return 0, None
        ordered = table.sort_by([(c, "ascending") for c in columns])
        same = None
        for name in columns:
            col = ordered.column(name)
            equal = pc.equal(col.slice(1), col.slice(0, n - 1))
            same = equal if same is None else pc.and_(same, equal)
        count = pc.sum(same).as_py() or 0
        if not count:
            return 0, None
        row = ordered.slice(_first_true(same), 1).to_pylist()[0]
        return count, {k: _plain(v) for k, v in row.items()}

    def column(self, column: str) -> Any:
        """The column's values (dictionary columns decoded); parquet reads just that column."""
        import pyarrow.types as pat

        if column not in self._columns:
            values = (self._file.read(columns=[column]).column(0) if self._file is not None
                      else self._csv().column(column))  # read_table would import pandas
            self._columns[column] = (values.cast(values.type.value_type)
                                     if pat.is_dictionary(values.type) else values)
        return self._columns[column]

    def key_table(self, columns: list[str]) -> Any:
        """The key columns together, as a table."""
        return self._file.read(columns=columns) if self._file is not None else self._csv().select(columns)

    def _csv(self) -> Any:
        """A CSV's data columns (every needed column present in the file), parsed once."""
        import pyarrow.csv as pcsv

        if self._table is None:
            wanted = [c for c in self._data_columns if c in self.schema.names] or self.columns[:1]
            self._table = pcsv.read_csv(self.path,
                                        convert_options=pcsv.ConvertOptions(include_columns=wanted))
        return self._table

    def _statistics(self, column: str) -> list[Any] | None:
        """Every row group's statistics of ``column``; None when any is missing (or not allowed)."""
        i = self._column_index(column) if self._meta is not None else None
        if i is None:
            return None
        stats = [self._meta.row_group(g).column(i).statistics for g in range(self._meta.num_row_groups)]
        return None if any(s is None for s in stats) else stats

    def _column_index(self, column: str) -> int | None:
        """The parquet leaf index of a top-level column, or None (nested or absent)."""
        paths = [self._meta.schema.column(i).path for i in range(self._meta.num_columns)]
        return paths.index(column) if column in paths else None

    def _stored_unit_s(self, column: str) -> float | None:
        """Seconds per stored unit of a timestamp column (the file's own unit, which may differ
        from the Arrow type it reads back as); None when not stored as INT64 timestamps."""
        import json

        col = self._meta.schema.column(self._column_index(column))
        if col.physical_type != "INT64":
            return None
        unit = json.loads(col.logical_type.to_json()).get("timeUnit")
        return {"milliseconds": 1e-3, "microseconds": 1e-6, "nanoseconds": 1e-9}.get(unit)

    def _data_min_max(self, column: str) -> tuple[float, float] | None:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.types as pat

        values = self.column(column)
        kind = values.type
        if pat.is_timestamp(kind):
            scale = _UNIT_S[kind.unit]
            values = values.cast(pa.int64())
        else:
            scale, values = 1.0, values.cast(pa.float64())
        found = pc.min_max(values)
        low, high = found["min"].as_py(), found["max"].as_py()
        return None if low is None else (low * scale, high * scale)


def _float(value: float) -> Any:
    """An Arrow float64 scalar, built from its bytes: ``pa.scalar(value)`` would import pandas."""
    import pyarrow as pa

    return pa.Array.from_buffers(pa.float64(), 1, [None, pa.py_buffer(struct.pack("<d", value))])[0]


def _first_true(mask: Any) -> int:
    """The index of the first true value of a boolean ChunkedArray (nulls are not true)."""
    offset = 0
    for chunk in mask.chunks:
        for i, v in enumerate(chunk.to_pylist()):
            if v:
                return offset + i
        offset += len(chunk)
    return 0


def _plain(value: Any) -> Any:
    """A key value as JSON-able text or number (timestamps as ISO text)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
