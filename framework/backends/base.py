"""The backend interface every engine adapter implements, and the context a step runs in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

if TYPE_CHECKING:
    from framework.compile.plan import Step
    from framework.spec import Recipe


@dataclass
class RunContext:
    """What a backend needs to observe or apply a step.

    ``data_fingerprints`` are the data files' content hashes the plan was made with, so steps never
    hash a large file again. ``outputs`` maps the address of each step applied (or found applied) earlier in this run to the
    JSON-able dict its backend returned, so later steps read upstream results (a dataset path, a
    model version) without recomputing them.
    """

    recipe: "Recipe"
    project_dir: Path
    workspace: Path
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda line: None
    data_fingerprints: dict[str, str] = field(default_factory=dict)
    #: The steps of the plan being applied, so a step can read its siblings' targets (the
    #: rollout controller reads every ``rollout.step`` of the plan, its only author).
    plan_steps: tuple["Step", ...] = ()

    def source_fingerprints(self) -> dict[str, str]:
        """Content fingerprints of the data files, by source: the plan's, hashed again only without one."""
        if not self.data_fingerprints:
            from framework.backends.data_files import fingerprint_sources

            self.data_fingerprints = fingerprint_sources(self.recipe, self.project_dir)
        return self.data_fingerprints

    def upstream(self, step: "Step", kind_prefix: str) -> dict[str, Any]:
        """The outputs of the one dependency of ``step`` whose address starts with ``kind_prefix``."""
        for dep in step.depends_on:
            if dep.startswith(kind_prefix):
                return self.outputs.get(dep, {})
        return {}


class Backend(Protocol):
    """An engine adapter: observes and applies the step kinds it lists.

    Heavy SDKs (feast, ray, mlflow, xgboost) are imported inside the methods, never at module level.
    """

    kinds: ClassVar[tuple[str, ...]]

    def observe(self, step: "Step", ctx: RunContext) -> str | None:
        """The fingerprint the engine holds for ``step.address``; None when it holds nothing."""
        ...

    def apply(self, step: "Step", ctx: RunContext) -> dict[str, Any]:
        """Make the engine match the step; return JSON-able outputs for downstream steps."""
        ...

    def delete(self, address: str, ctx: RunContext) -> None:
        """Remove what ``address`` created from the engine."""
        ...
