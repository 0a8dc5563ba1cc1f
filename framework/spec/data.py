"""The ``data`` section: named source tables (parquet or CSV files), their event timestamps and checks."""

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from framework.spec.base import Name, Spec

#: The rules a source's ``checks`` may hold, in the order they are evaluated and reported.
RULES = ("not_null", "unique_key", "range", "allowed_values", "freshness", "row_count")


def _no_repeats(columns: list[str]) -> list[str]:
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ValueError(f"Column {', '.join(map(repr, repeated))} is listed twice; list each column once")
    return columns


Column = Annotated[str, Field(min_length=1)]
Columns = Annotated[list[Column], AfterValidator(_no_repeats)]
Value = str | bool | int | float


class Range(Spec):
    """Bounds every non-null value of a numeric column must lie within (inclusive)."""

    min: float | None = Field(default=None, description="Smallest allowed value (inclusive); none when unset.")
    max: float | None = Field(default=None, description="Largest allowed value (inclusive); none when unset.")

    @model_validator(mode="after")
    def _bounded(self) -> "Range":
        if self.min is None and self.max is None:
            raise ValueError("A range needs 'min', 'max' or both, e.g. {min: 0, max: 120}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is larger than max ({self.max:g})")
        return self

    def text(self) -> str:
        """``0..600``, ``>= 0`` or ``<= 1``, for messages."""
        if self.min is not None and self.max is not None:
            return f"{self.min:g}..{self.max:g}"
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


class Freshness(Spec):
    """How old the newest row may be: the largest ``timestamp_field`` value against the clock."""

    max_age_s: float = Field(
        gt=0, description="Most seconds the newest row's timestamp_field may lie in the past, e.g. "
                          "86400 for a table loaded daily. Naive timestamps are read as UTC.")


class RowCount(Spec):
    """How much the number of rows may change since the last training run of this recipe."""

    max_change: float = Field(
        gt=0, description="Largest fractional change of the row count against the count the last "
                          "training run checked (0.5 = 50% more or fewer rows). The first run, with "
                          "no count to compare, passes.")


class SourceChecks(Spec):
    """Data quality rules for one source, checked by `loom plan` and again before training.

    A failing rule blocks training (nothing is applied) with an error naming the source, the
    column, the rule, the value found and the fix. Value rules (range, allowed_values) skip nulls:
    say ``not_null`` for those.
    """

    not_null: Columns = Field(default_factory=list, description="Columns that may hold no nulls.")
    unique_key: Columns = Field(
        default_factory=list,
        description="Columns that together identify a row: no two rows share their values "
                    "(e.g. [customer_id, event_timestamp]).")
    range: dict[Column, Range] = Field(
        default_factory=dict, description="Numeric columns and their bounds: {column: {min, max}}.")
    allowed_values: dict[Column, Annotated[list[Value], Field(min_length=1)]] = Field(
        default_factory=dict,
        description="Columns and the only values they may hold: {column: [value, ...]}.")
    freshness: Freshness | None = Field(
        default=None, description="How old the newest row (by timestamp_field) may be; unchecked when unset.")
    row_count: RowCount | None = Field(
        default=None, description="How much the row count may change since the last training run; "
                                  "unchecked when unset.")

    @property
    def empty(self) -> bool:
        """True when no rule is declared."""
        return not any(getattr(self, rule) for rule in RULES)


class DataSource(Spec):
    """One table of events: each row is what was known about an entity at ``timestamp_field``."""

    type: Literal["parquet", "csv"] = Field(description="File format of the source.")
    path: str = Field(
        description="File path, relative to the project directory (where `recipes/` lives) or absolute."
    )
    timestamp_field: str = Field(
        description="Column with the event time of each row (a timestamp column)."
    )
    created_timestamp_field: str | None = Field(
        default=None,
        description=(
            "Column with the time each row became known. When set, training joins use "
            "'as known at' semantics, so late-arriving values never leak into earlier rows."
        ),
    )
    description: str = Field(default="", description="What this table holds, for people.")
    checks: SourceChecks = Field(
        default_factory=SourceChecks,
        description="Data quality rules, checked when a plan reads the data and again before training "
                    "(see docs/data-checks.md); none by default.")


class Data(Spec):
    """All data sources a recipe reads, by name."""

    sources: dict[Name, DataSource] = Field(
        description="Data sources by name; feature views and the training label refer to these names.",
        min_length=1,
    )
