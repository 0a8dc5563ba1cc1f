"""The ``batch`` section: defaults for ``loom batch``, which scores a table with a registered version."""

from typing import Any, Literal

from pydantic import Field, model_serializer

from framework.spec.base import Name, Spec


class Batch(Spec):
    """Batch inference defaults; every one can be given on the ``loom batch`` command line instead."""

    input: str | None = Field(
        default=None,
        description="Parquet or CSV file of entity keys to score (relative to the project), "
        "optionally with a timestamp column and request-style feature columns that override the "
        "stored features; --input overrides it.",
    )
    output: str | None = Field(
        default=None,
        description="Parquet file the predictions go to (relative to the project); default "
        "<workspace>/batch/<recipe name>/predictions.parquet; --output overrides it.",
    )
    alias: Name = Field(
        default="champion", description="Registry alias of the version that scores; --version or "
        "--alias override it.",
    )
    timestamp_field: str = Field(
        default="event_timestamp",
        description="Input column with each row's time: features are read as known at that time "
        "(point in time). Without the column, every row is scored as of --as-of (default: now).",
    )
    batch_size: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Rows per batch handed to the model."
    )
    concurrency: int = Field(default=1, ge=1, le=1024, description="Ray Data scoring workers.")
    cpus_per_worker: float = Field(
        default=0.5, gt=0, description="CPUs reserved per scoring worker (they must be free on the "
        "cluster beside what serves, or the job is refused with the numbers).")
    predictor: Literal["xgboost", "treelite", "auto"] = Field(
        default="xgboost",
        description="How the scoring workers evaluate the trees. xgboost: the booster's "
        "inplace_predict. treelite: the version's compiled library (the one serving.predictor "
        "uses, built and checked against XGBoost the same way, reused from MLflow), else the job "
        "fails. auto: compile, time both at batch_size rows per call (at most 100,000) and score "
        "with the faster; the job's record says which and the timings.",
    )

    @model_serializer(mode="wrap")
    def _without_default_predictor(self, handler: Any) -> dict[str, Any]:
        # Recipes that keep XGBoost dump (and so fingerprint) as they did before the key existed.
        data = handler(self)
        if data.get("predictor") == "xgboost":
            data.pop("predictor", None)
        return data
