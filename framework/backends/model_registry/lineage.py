"""Lineage of a trained model: recipe name and fingerprint, data-file fingerprints, feature views, code."""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import framework
from framework.compile.fingerprint import fingerprint

if TYPE_CHECKING:
    from framework.backends.base import RunContext


def recipe_identity(ctx: "RunContext") -> tuple[str, str]:
    """The composed recipe's (fingerprint, text): the executor's ``_recipe`` output, else the model's JSON."""
    given = ctx.outputs.get("_recipe", {})
    if given.get("fingerprint") and given.get("yaml"):
        return str(given["fingerprint"]), str(given["yaml"])
    data = ctx.recipe.model_dump(mode="json")
    return given.get("fingerprint") or fingerprint(data), json.dumps(data, indent=2, sort_keys=True)


def training_sources(ctx: "RunContext") -> list[str]:
    """Data sources the model is trained from: the label's and every used feature view's."""
    recipe = ctx.recipe
    views = {view for view, _ in recipe.feature_refs()}
    sources = {recipe.features.views[v].source for v in views if v in recipe.features.views}
    return sorted(sources | {recipe.training.label.source})


def data_fingerprints(ctx: "RunContext") -> dict[str, str]:
    """``sha256:`` of each training source file's bytes, by source name ("missing" if absent)."""
    known = ctx.source_fingerprints()
    return {name: known.get(name, "missing") for name in training_sources(ctx)}


def feature_views(ctx: "RunContext") -> list[str]:
    """Feature views the model reads, in first-use order."""
    return list(dict.fromkeys(view for view, _ in ctx.recipe.feature_refs()))


def code_version() -> str:
    """``<loom version>`` plus ``+g<commit>`` when Loom runs from a git checkout."""
    commit = _git_commit()
    return f"{framework.__version__}+g{commit[:12]}" if commit else framework.__version__


@lru_cache(maxsize=1)
def _git_commit() -> str:
    root = Path(framework.__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):  # no git binary, or it hung
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def lineage_tags(ctx: "RunContext") -> dict[str, str]:
    """MLflow tags (all strings) that say where a model came from."""
    recipe_fp, _ = recipe_identity(ctx)
    tags: dict[str, Any] = {
        "loom.recipe": ctx.recipe.name,
        "loom.recipe_fingerprint": recipe_fp,
        "loom.model_id": ctx.recipe.model_id,
        "loom.feature_views": ",".join(feature_views(ctx)),
        "loom.feature_service": ctx.recipe.features.service.name,
        "loom.code_version": code_version(),
        "loom.label": f"{ctx.recipe.training.label.source}.{ctx.recipe.training.label.column}",
    }
    for name, fp in data_fingerprints(ctx).items():
        tags[f"loom.data.{name}"] = fp
    return {k: str(v) for k, v in tags.items()}
