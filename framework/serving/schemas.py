"""Request and response bodies of the prediction API (also what ``/docs`` shows)."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      StringConstraints, model_validator)

#: A category sent for a categorical (string) feature; longer strings are not categories.
Category = Annotated[StrictStr, StringConstraints(max_length=256)]
FeatureValue = Union[StrictBool, StrictInt, StrictFloat, Category, None]
EntityValue = Union[StrictStr, StrictInt]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Instance(_Body):
    """One thing to predict: entity keys to look features up by, and features given directly."""

    entities: dict[str, EntityValue] = Field(
        default_factory=dict, description="Join keys, e.g. {\"customer_id\": \"C000042\"}.")
    features: dict[str, FeatureValue] = Field(
        default_factory=dict, description="Feature values that fill or override looked-up ones.")


class PredictRequest(_Body):
    """One instance (``entities``/``features``) or a batch (``instances``)."""

    model_id: StrictStr | None = Field(
        default=None, max_length=128,
        description="Model to call; required on /v1/predictions, implied by the path otherwise. "
        "'churn@2' or 'churn@champion' pins a loaded version (stable, champion, candidate, "
        "previous), bypassing the traffic split.")
    entities: dict[str, EntityValue] | None = Field(default=None, description="Join keys.")
    features: dict[str, FeatureValue] | None = Field(default=None, description="Feature values.")
    instances: list[Instance] | None = Field(
        default=None, min_length=1, description="Batch form: many instances in one request.")

    @model_validator(mode="after")
    def _one_form(self) -> "PredictRequest":
        single = self.entities is not None or self.features is not None
        if single and self.instances is not None:
            raise ValueError("give either entities/features or instances, not both")
        if not single and self.instances is None:
            raise ValueError("give entities and/or features, or instances")
        return self

    def as_instances(self) -> list[Instance]:
        """The request as a list of instances (length 1 for the single form)."""
        if self.instances is not None:
            return list(self.instances)
        return [Instance(entities=self.entities or {}, features=self.features or {})]


class Answer(BaseModel):
    """One instance's answer."""

    prediction: Any = Field(description="Label, class index or value.")
    probability: float | None = Field(description="Probability of the prediction (classifiers).")
    probabilities: list[float] | None = Field(
        default=None, description="Every class's probability, by class index (multiclass "
        "models; absent otherwise).")
    model_version: str | None = Field(description="Version that answered; null for rules/default.")
    contract: int | None = Field(default=None, description="Major contract of the version that "
                                 "answered (registry.contract); null for rules/default.")
    degraded: bool = Field(description="True when a fallback level answered.")
    fallback: str | None = Field(default=None, description="Fallback level that answered.")
    cached: bool = Field(default=False, description="Answered from the cache.")
    missing_features: list[str] | None = Field(
        default=None, description="Features the model got as missing values "
        "(serving.missing_features: model); absent when every feature had a value.")


class PredictResponse(Answer):
    """``POST /v1/predictions`` answer for one instance."""

    model_id: str
    pinned: str | None = Field(default=None, description="The version or alias the request pinned.")
    latency_ms: float
    request_id: str


class BatchResponse(BaseModel):
    """Answer for the batch form."""

    model_id: str
    predictions: list[Answer]
    latency_ms: float
    request_id: str
