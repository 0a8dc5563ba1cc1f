"""Loom's one exception tree: every error a user can see is a LoomError.

    LoomError
    ├── RecipeError          a recipe (or its overrides) is wrong; carries every Problem found at once
    │   └── CompositionError Hydra could not compose the recipe (unknown option, bad override, YAML)
    ├── PlanError            a saved plan cannot be read or no longer matches the recipe
    ├── DataError            a data source is missing, unreadable, or does not match the recipe
    ├── BackendError         an engine (Feast, Ray, MLflow, Ray Serve) refused or failed
    │   └── GateError        a trained model missed a quality gate; nothing was registered as champion
    └── StateError           the workspace state is locked, corrupt or half-written

Third-party exceptions are wrapped with ``raise LoomError(...) from exc`` so the CLI can print a
message without a traceback (the original is kept for ``--debug``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe: where it is, what was found, the rule, and how to fix it."""

    path: str
    message: str
    file: str | None = None
    value: object = field(default=None)
    has_value: bool = False
    hint: str | None = None

    def render(self) -> str:
        """``recipes/churn.yaml: rollout.steps[2]: Got 120. Traffic percent must be 1..100. Hint: ...``"""
        where = f"{self.file}: " if self.file else ""
        key = f"{self.path}: " if self.path else ""
        got = f"Got {_show(self.value)}. " if self.has_value else ""
        hint = f"\n    hint: {self.hint}" if self.hint else ""
        return f"{where}{key}{got}{self.message}{hint}"


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


class LoomError(Exception):
    """Base of every error Loom reports to a user."""

    exit_code = 1

    def render(self) -> str:
        return str(self)


class RecipeError(LoomError):
    """A recipe is invalid; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | Problem, title: str = "Invalid recipe") -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.title = title
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = f"{self.title}: {n} problem{'s' if n != 1 else ''}"
        return "\n".join([head] + [f"  - {p.render()}" for p in self.problems])


class CompositionError(RecipeError):
    """Hydra could not compose the recipe: unknown option, bad override or unreadable YAML."""


class PlanError(LoomError):
    """A saved plan is unreadable, from another Loom version, or stale against observed state."""


class DataError(LoomError):
    """A data source is missing, unreadable or does not match what the recipe declares."""


class BackendError(LoomError):
    """An engine refused or failed; the message says which engine and what to do."""


class GateError(BackendError):
    """A trained model missed a quality gate; nothing was registered as champion."""


class StateError(LoomError):
    """The workspace state is locked by another command, corrupt, or half-written."""
