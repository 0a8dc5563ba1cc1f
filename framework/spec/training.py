"""The ``training`` section: label, split, model, scaling, tuning and quality gates."""

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_serializer, model_validator

from framework.spec.base import CustomResources, Name, Spec
from framework.spec.xgboost_params import (
    PARAM_NAMES,
    XGBoostParams,
    check_same_param_once,
    search_problem,
)

Task = Literal["binary", "multiclass", "regression"]

#: XGBoost objectives Loom trains, and the task each one solves.
OBJECTIVE_TASK: dict[str, Task] = {
    "binary:logistic": "binary",
    "multi:softprob": "multiclass",
    "reg:squarederror": "regression",
    "reg:absoluteerror": "regression",
    "reg:pseudohubererror": "regression",
}
Objective = Literal[
    "binary:logistic",
    "multi:softprob",
    "reg:squarederror",
    "reg:absoluteerror",
    "reg:pseudohubererror",
]

#: Metrics Loom computes on the held-out test split, per task (gates and tuning pick from these).
TASK_METRICS: dict[Task, tuple[str, ...]] = {
    "binary": ("auc", "logloss", "accuracy", "f1", "precision", "recall"),
    "multiclass": ("logloss", "accuracy", "f1_macro"),
    "regression": ("rmse", "mae", "r2"),
}

ParamValue = Union[bool, int, float, str]


class Label(Spec):
    """What the model learns to predict: a column of a data source, joined on entity keys and time."""

    source: Name = Field(description="Data source (from data.sources) holding labels and entity keys.")
    column: str = Field(description="Label column in that source.")


class RandomSplit(Spec):
    """Seeded random split of the training rows."""

    type: Literal["random"] = Field(description="Split type.")
    validation_fraction: float = Field(
        default=0.15, gt=0, lt=1, description="Share of rows for early stopping (0..1)."
    )
    test_fraction: float = Field(
        default=0.15, gt=0, lt=1, description="Share of rows held out for evaluation and gates (0..1)."
    )
    seed: int = Field(default=42, description="Random seed; the same seed gives the same split.")


class TimeSplit(Spec):
    """Split by label time: the oldest rows train, the newest test (no look-ahead)."""

    type: Literal["time"] = Field(description="Split type.")
    validation_fraction: float = Field(
        default=0.15, gt=0, lt=1, description="Share of rows, after training rows, for early stopping."
    )
    test_fraction: float = Field(
        default=0.15, gt=0, lt=1, description="Share of the newest rows held out for evaluation."
    )


Split = Annotated[Union[RandomSplit, TimeSplit], Field(discriminator="type")]


class XGBoostModel(Spec):
    """A gradient-boosted tree model trained with XGBoost."""

    type: Literal["xgboost"] = Field(description="Model type.")
    objective: Objective = Field(description="XGBoost objective; decides the task and its metrics.")
    num_class: int | None = Field(
        default=None, ge=2, description="Number of classes; required for multi:softprob only."
    )
    params: XGBoostParams = Field(
        default_factory=dict,
        description="XGBoost booster parameters, typed and range-checked (max_depth, eta, "
        "subsample, ...). A parameter Loom does not know goes under extra_params.",
    )
    extra_params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="XGBoost parameters passed through unchecked (Loom warns). Use it only for "
        "parameters that training.model.params does not list.",
    )
    num_boost_round: int = Field(default=100, ge=1, le=100_000, description="Boosting rounds.")
    early_stopping_rounds: int | None = Field(
        default=10,
        ge=1,
        description="Stop when the validation metric has not improved for this many rounds; null: never.",
    )

    @field_validator("params")
    @classmethod
    def _one_name_per_param(cls, params: dict[str, Any]) -> dict[str, Any]:
        check_same_param_once(params)
        return params

    @model_serializer(mode="wrap")
    def _without_empty_extra(self, handler: Any) -> dict[str, Any]:
        # Recipes without extra_params dump (and so fingerprint) as they did before it existed.
        data = handler(self)
        if not data.get("extra_params"):
            data.pop("extra_params", None)
        return data

    @field_validator("extra_params")
    @classmethod
    def _only_unknown_extra(cls, extra: dict[str, Any]) -> dict[str, Any]:
        known = sorted(k for k in extra if k in PARAM_NAMES)
        if known:
            raise ValueError(
                f"Loom checks {', '.join(known)}: move {'it' if len(known) == 1 else 'them'} to "
                "training.model.params (extra_params is for parameters Loom does not know)"
            )
        return extra


Model = Annotated[Union[XGBoostModel], Field(discriminator="type")]


#: Seconds Ray Train waits for the cluster's resources by default (``training.scaling.resource_wait_s``).
DEFAULT_RESOURCE_WAIT_S = 300.0


class Scaling(Spec):
    """How many Ray Train workers train the model, and what each gets."""

    num_workers: int = Field(default=1, ge=1, le=1024, description="Ray Train workers.")
    cpus_per_worker: float = Field(default=1.0, gt=0, description="CPUs reserved per worker.")
    use_gpu: bool = Field(default=False, description="Give each worker one GPU.")
    max_failures: int = Field(
        default=0, ge=-1, description="Worker failures tolerated before the job fails (-1: always retry)."
    )
    resources_per_worker: CustomResources = Field(
        default_factory=dict,
        description="Custom Ray resources each worker (and each tuning trial) reserves besides its "
        "CPUs, e.g. {train_node: 1}: workers then run only on nodes started with `ray start "
        "--resources='{\"train_node\": 1}'`. A name no node of the cluster has fails at once.",
    )
    resource_wait_s: float = Field(
        default=DEFAULT_RESOURCE_WAIT_S, gt=0, le=86_400,
        description="Seconds training waits for the Ray cluster to free the workers' CPUs (num_workers "
        "x cpus_per_worker), or a sweep for any trial to start, before failing with what holds them; "
        "a progress line every 10 s meanwhile.",
    )

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: Any) -> dict[str, Any]:
        # A wait bound is not part of the model: at its default, recipes dump (and so fingerprint)
        # as they did before it existed, so adding it retrains nothing.
        data = handler(self)
        if data.get("resource_wait_s") == DEFAULT_RESOURCE_WAIT_S:
            data.pop("resource_wait_s", None)
        if not data.get("resources_per_worker"):  # likewise for recipes without custom resources
            data.pop("resources_per_worker", None)
        return data


class ChoiceDim(Spec):
    """Pick one of a list of values."""

    type: Literal["choice"] = Field(description="Search dimension type.")
    values: list[ParamValue] = Field(description="Candidate values.", min_length=1)


class UniformDim(Spec):
    """A float drawn uniformly (or log-uniformly) between low and high."""

    type: Literal["uniform", "loguniform"] = Field(description="Search dimension type.")
    low: float = Field(description="Lower bound (inclusive).")
    high: float = Field(description="Upper bound.")


class RandintDim(Spec):
    """An integer drawn uniformly from [low, high)."""

    type: Literal["randint"] = Field(description="Search dimension type.")
    low: int = Field(description="Lower bound (inclusive).")
    high: int = Field(description="Upper bound (exclusive).")


SearchDim = Annotated[Union[ChoiceDim, UniformDim, RandintDim], Field(discriminator="type")]


class Tuning(Spec):
    """A Ray Tune sweep over model params; the best trial's config trains the final model."""

    search_space: dict[str, SearchDim] = Field(
        description="Model params to search, by name (they override training.model.params): "
        "parameters training.model.params knows, or names given in training.model.extra_params.",
        min_length=1,
    )
    num_samples: int = Field(default=8, ge=1, le=10_000, description="Trials to run.")
    metric: str = Field(description="Validation metric to optimise (e.g. auc, logloss, rmse).")
    mode: Literal["min", "max"] = Field(description="Whether a lower or higher metric is better.")
    scheduler: Literal["asha", "fifo"] = Field(
        default="asha", description="asha stops weak trials early; fifo runs every trial fully."
    )
    max_concurrent_trials: int = Field(default=2, ge=1, description="Trials run at once.")


class Gate(Spec):
    """A threshold the test-split metric must meet before the model is registered."""

    metric: str = Field(description="Test metric name (see the objective's metrics).")
    min: float | None = Field(default=None, description="The metric must be at least this.")
    max: float | None = Field(default=None, description="The metric must be at most this.")


class Training(Spec):
    """How the model is trained, evaluated and gated."""

    label: Label = Field(description="The label to learn.")
    split: Split = Field(
        default_factory=lambda: RandomSplit(type="random"), description="Train/validation/test split."
    )
    model: Model = Field(description="The model and its hyperparameters.")
    scaling: Scaling = Field(default_factory=Scaling, description="Ray Train scaling.")
    tuning: Tuning | None = Field(default=None, description="Optional Ray Tune sweep.")
    gates: list[Gate] = Field(
        default_factory=list, description="Test-metric thresholds checked before registration."
    )

    @model_validator(mode="after")
    def _search_known_params(self) -> "Training":
        if self.tuning is None:
            return self
        extra = set(self.model.extra_params)
        for name, dim in self.tuning.search_space.items():
            problem = search_problem(name, dim.model_dump(), extra)
            if problem is not None:
                raise problem
        return self
