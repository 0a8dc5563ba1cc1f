"""The recipe language: frozen, strict pydantic models and the cross-section checks (stdlib + pydantic only).

Modules here keep real annotations (no ``from __future__ import annotations``): pydantic reads them
as they are instead of evaluating strings, which takes a few ms off every ``loom validate``.
"""

from framework.spec.checks import CHECKS, run_checks
from framework.spec.recipe import SCHEMA_VERSION, Recipe

__all__ = ["CHECKS", "SCHEMA_VERSION", "Recipe", "run_checks"]
