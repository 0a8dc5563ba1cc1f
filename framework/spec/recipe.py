"""The whole recipe: one model's data, features, training, registry, serving, rollout and monitoring."""

from typing import Literal

from pydantic import Field

from framework.spec.base import Name, Spec
from framework.spec.batch import Batch
from framework.spec.data import Data
from framework.spec.env import Env
from framework.spec.features import Features
from framework.spec.monitoring import Monitoring
from framework.spec.registry import Registry
from framework.spec.rollout import Direct, Rollout
from framework.spec.serving import Serving
from framework.spec.streaming import Streaming
from framework.spec.training import OBJECTIVE_TASK, TASK_METRICS, Task, Training

SCHEMA_VERSION = 1


class Recipe(Spec):
    """A Loom recipe (schema_version 1)."""

    schema_version: Literal[1] = Field(description="Recipe language version; this Loom reads 1.")
    name: Name = Field(description="Recipe name; also the default model id and Feast project.")
    description: str = Field(default="", description="What this recipe builds, for people.")
    owner: str = Field(default="", description="Team or person who owns it.")
    data: Data = Field(description="Data sources.")
    features: Features = Field(description="Entities, feature views, feature service, stores.")
    training: Training = Field(description="Training, tuning and gates.")
    registry: Registry = Field(default_factory=Registry, description="Model registry.")
    serving: Serving = Field(default_factory=Serving, description="Prediction service.")
    rollout: Rollout = Field(
        default_factory=lambda: Direct(strategy="direct"), description="Rollout strategy."
    )
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Monitoring.")
    batch: Batch = Field(default_factory=Batch, description="Defaults of `loom batch recipe=NAME` (batch inference).")
    streaming: Streaming | None = Field(
        default=None, description="Streaming inference: `loom stream up recipe=NAME` scores the "
        "events of a stream with the served model (conf/streaming/redis.yaml).")
    env: Env = Field(default_factory=Env, description="Runtime environment.")

    @property
    def model_id(self) -> str:
        """The id clients use for this model (the registered model name)."""
        return self.registry.model_name or self.name

    @property
    def project(self) -> str:
        """The Feast project name (prefixed with ``env.project`` when set)."""
        own = self.features.project or self.name
        return f"{self.env.project}_{own}" if self.env.project else own

    @property
    def app_name(self) -> str:
        """The model's name on shared engines: its Serve application, rollout and stats actors."""
        return f"{self.env.project}-{self.model_id}" if self.env.project else self.model_id

    @property
    def task(self) -> Task:
        """binary, multiclass or regression, from the objective."""
        return OBJECTIVE_TASK[self.training.model.objective]

    @property
    def metrics(self) -> tuple[str, ...]:
        """Test metrics this recipe's model produces."""
        return TASK_METRICS[self.task]

    def feature_refs(self) -> list[tuple[str, str]]:
        """The model's features as (view, feature) pairs in model input order, '*' expanded."""
        refs: list[tuple[str, str]] = []
        for ref in self.features.service.features:
            view, _, feat = ref.partition(":")
            if feat == "*" and view in self.features.views:
                refs.extend((view, f) for f in self.features.views[view].fields)
            else:
                refs.append((view, feat))
        return refs

    def feature_names(self) -> list[str]:
        """Model input column names, in order."""
        return [feat for _, feat in self.feature_refs()]
