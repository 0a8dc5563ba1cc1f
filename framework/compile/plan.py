"""The plan: an ordered list of typed steps with fingerprints, a value that round-trips through JSON."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from framework.errors import PlanError

Action = Literal["create", "update", "delete", "no-op"]
PLAN_FORMAT = 1

#: Step kinds, in the order the compiler emits them; backends register for kinds.
STEP_KINDS = (
    "feast.entity",
    "feast.view",
    "feast.service",
    "feast.materialize",
    "training.dataset",
    "training.tune",
    "training.train",
    "training.gates",
    "registry.register",
    "serving.deploy",
    "rollout.step",
    "monitoring.rules",
)


class Step(BaseModel):
    """One unit of work: what it is, what it depends on, the fingerprint of its inputs, its action."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(description="Unique, stable name: 'feast.view.customer_profile'.")
    kind: str = Field(description="Step kind; decides the backend that applies it.")
    fingerprint: str = Field(description="sha256 of the step's inputs and upstream fingerprints.")
    depends_on: tuple[str, ...] = Field(default=(), description="Addresses this step needs first.")
    attrs: dict[str, Any] = Field(default_factory=dict, description="What the step does, as data.")
    action: Action = Field(default="create", description="What apply will do.")
    observed_fingerprint: str | None = Field(default=None, description="Fingerprint found applied.")
    reason: str = Field(default="", description="Why the action was chosen, for people.")


class Plan(BaseModel):
    """A recipe compiled and diffed against observed state; ``loom apply plan.json`` applies it exactly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = Field(default=PLAN_FORMAT, description="Plan file format.")
    loom_version: str = Field(description="Loom version that made the plan.")
    recipe_name: str = Field(description="Recipe name.")
    recipe_fingerprint: str = Field(description="sha256 of the composed recipe.")
    recipe: dict[str, Any] = Field(description="The composed recipe (secrets are references only).")
    project_dir: str = Field(description="Directory relative paths in the recipe resolve against.")
    steps: tuple[Step, ...] = Field(description="Steps in apply order.")

    @property
    def changes(self) -> list[Step]:
        """Steps that do something."""
        return [s for s in self.steps if s.action != "no-op"]

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def step(self, address: str) -> Step:
        for s in self.steps:
            if s.address == address:
                return s
        raise KeyError(address)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "plan") -> "Plan":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"{source}: not a plan file (invalid JSON at line {exc.lineno}).") from exc
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise PlanError(
                f"{source}: not a Loom plan of format {PLAN_FORMAT}. "
                "Make a new one with `loom plan recipe=NAME -o plan.json`."
            )
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise PlanError(f"{source}: the plan file is damaged ({exc.__class__.__name__}).") from exc
