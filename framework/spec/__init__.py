"""The recipe language: frozen, strict pydantic models and the cross-section checks (stdlib + pydantic only)."""

from framework.spec.checks import CHECKS, run_checks
from framework.spec.recipe import SCHEMA_VERSION, Recipe

__all__ = ["CHECKS", "SCHEMA_VERSION", "Recipe", "run_checks"]
