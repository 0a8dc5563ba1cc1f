"""The ``data`` section: named source tables (parquet or CSV files) with their event timestamps."""

from typing import Literal

from pydantic import Field

from framework.spec.base import Name, Spec


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


class Data(Spec):
    """All data sources a recipe reads, by name."""

    sources: dict[Name, DataSource] = Field(
        description="Data sources by name; feature views and the training label refer to these names.",
        min_length=1,
    )
