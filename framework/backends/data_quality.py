"""Data checks at the source (``data.sources.X.checks``): each rule measured, judged and explained.

``loom plan`` runs them cheaply (parquet statistics where they answer, see ``data_stats``); an
apply that trains runs them again on the data itself before any step, so a failing rule blocks
training with nothing applied. The training run logs the results (``loom/data_checks.json``) and
the row counts it checked become the baseline of ``row_count`` (``rows``): they live in the
recipe's section of the workspace state, which ``loom plan`` reads without importing MLflow.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.backends.data_files import source_file
from framework.backends import data_rules as rules
from framework.backends.data_rules import Outcome
from framework.backends.data_stats import SourceFacts
from framework.errors import Problem, RecipeError

if TYPE_CHECKING:
    from framework.backends.base import RunContext
    from framework.spec import Recipe
    from framework.spec.data import DataSource

TITLE = "Data checks failed: training is blocked and nothing was applied"
#: The key of ``RunContext.outputs`` that carries the apply's results to the training backend.
OUTPUTS_KEY = "_data_checks"
#: The recipe state section's key for the row counts the last training run checked.
STATE_KEY = "data_checks"


def run_checks(recipe: "Recipe", project_dir: Path, workspace: Path, use_statistics: bool,
               now: float | None = None) -> dict[str, Any]:
    """Every declared rule of every source that has checks.

    Args:
        use_statistics: answer from parquet statistics where they are complete (``loom plan``);
            False reads the data (before training).
        now: the clock for ``freshness`` (epoch seconds; default: now).

    Returns:
        ``{"checked_at", "statistics", "sources": {name: {"rows", "path"}}, "results": [...],
        "passed", "failed"}``; a missing or unreadable file has no entry (the preflight reports it).
    """
    now = time.time() if now is None else now
    checked = any(not src.checks.empty for src in recipe.data.sources.values())
    baseline = last_rows(workspace, recipe.name) if checked else {}
    sources: dict[str, Any] = {}
    outcomes: list[Outcome] = []
    for name, src in recipe.data.sources.items():
        if src.checks.empty:
            continue
        path = source_file(recipe, project_dir, name)
        try:
            facts = SourceFacts(path, src.type, _data_columns(src), use_statistics, src.path)
        except Exception:  # noqa: BLE001 - missing/unreadable: the preflight's source checks say so
            continue
        found = check_source(name, src, facts, baseline.get(name), now)
        outcomes += found
        sources[name] = {"rows": facts.num_rows().value, "path": src.path}
    return {"checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "statistics": use_statistics, "sources": sources,
            "results": [asdict(o) for o in outcomes],
            "passed": sum(o.passed for o in outcomes), "failed": sum(not o.passed for o in outcomes)}


def problems(report: dict[str, Any]) -> list[Problem]:
    """One Problem per failed rule of a ``run_checks`` report."""
    return [Outcome(**r).problem() for r in report["results"] if not r["passed"]]


def check_before_apply(ctx: "RunContext") -> dict[str, Any]:
    """Run every check on the data itself; the report, or RecipeError naming each failure.

    Raises:
        RecipeError: titled ``TITLE``, one Problem per failed rule.
    """
    report = run_checks(ctx.recipe, ctx.project_dir, ctx.workspace, use_statistics=False)
    found = problems(report)
    if found:
        raise RecipeError(found, title=TITLE)
    if report["results"]:
        ctx.progress(f"data checks: {report['passed']} passed on "
                     + ", ".join(f"{n} ({s['rows']:,} rows)" for n, s in report["sources"].items()))
    return report


def check_source(name: str, src: "DataSource", facts: SourceFacts, last: int | None,
                 now: float) -> list[Outcome]:
    """The outcomes of ``src.checks`` on one source's measured facts, in ``RULES`` order."""
    c, out = src.checks, []
    base = f"data.sources.{name}.checks"
    for i, col in enumerate(c.not_null):
        out.append(rules.not_null(name, f"{base}.not_null[{i}]", col, facts))
    if c.unique_key:
        out.append(rules.unique_key(name, f"{base}.unique_key", c.unique_key, facts))
    for col, bounds in c.range.items():
        out.append(rules.in_range(name, f"{base}.range.{col}", col, bounds, facts))
    for col, allowed in c.allowed_values.items():
        out.append(rules.allowed(name, f"{base}.allowed_values.{col}", col, allowed, facts))
    if c.freshness is not None:
        out.append(rules.fresh(name, f"{base}.freshness.max_age_s", src.timestamp_field,
                               c.freshness.max_age_s, facts, now))
    if c.row_count is not None:
        out.append(rules.row_count(name, f"{base}.row_count.max_change", c.row_count.max_change,
                                   facts, last))
    return out


def _data_columns(src: "DataSource") -> list[str]:
    """Columns the rules may read (a CSV reads them in one pass)."""
    c = src.checks
    return [*c.unique_key, *c.allowed_values, *c.not_null, *c.range,
            *([src.timestamp_field] if c.freshness else [])]


def last_rows(workspace: Path, recipe: str) -> dict[str, int]:
    """The row count per source that the recipe's last training run checked (empty: none yet)."""
    from framework.state import WorkspaceState

    if not (Path(workspace) / "state.json").is_file():
        return {}
    section = WorkspaceState(workspace).read()["recipes"].get(recipe) or {}
    return {k: int(v) for k, v in ((section.get(STATE_KEY) or {}).get("rows") or {}).items()}


def remember_rows(workspace: Path, recipe: str, report: dict[str, Any], run_id: str) -> None:
    """Record the row counts a training run checked: the next runs' ``row_count`` baseline."""
    from framework.state import WorkspaceState

    rows = {name: s["rows"] for name, s in report.get("sources", {}).items()}
    if not rows:
        return
    with WorkspaceState(workspace).recipe_transaction(recipe) as section:
        section[STATE_KEY] = {"rows": {**(section.get(STATE_KEY) or {}).get("rows", {}), **rows},
                              "checked_at": report.get("checked_at"), "run_id": run_id}
