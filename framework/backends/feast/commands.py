"""What `loom features materialize|get` call: incremental materialization and one online lookup."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from framework.errors import BackendError

if TYPE_CHECKING:
    from framework.backends.base import RunContext

_CASTS = {"string": str, "int32": int, "int64": int, "float32": float, "float64": float,
          "bool": lambda v: str(v).lower() in ("1", "true", "yes")}


def materialize(ctx: "RunContext", end: datetime | None = None) -> dict[str, Any]:
    """Materialize every online view from where it stopped up to ``end`` (default: now).

    Args:
        ctx: the run context of an applied recipe.
        end: end of the window; a naive time is UTC.

    Returns:
        ``{"rows": N, "views": [...], "per_view": {...}, "end": iso time}``; rows is 0 when nothing new.
    """
    from framework.backends.feast.backend import FeastBackend
    from framework.backends.feast.materialize import materialize_views, online_views

    _require_repo(ctx)
    return materialize_views(FeastBackend().store(ctx), ctx, online_views(ctx), end=end)


def get_online(ctx: "RunContext", entity: dict[str, Any]) -> dict[str, Any]:
    """The model's online features for one entity, e.g. ``{"customer_id": "C000042"}``.

    Values given as text (from a command line) are converted to the join key's declared type.

    Returns:
        Feature name → value (None where the online store has none), in model input order.
    """
    from framework.backends.feast.online import OnlineFeatureClient
    from framework.backends.feast.repo import repo_dir

    _require_repo(ctx)
    row = _typed_row(ctx, entity)
    recipe = ctx.recipe
    client = OnlineFeatureClient.from_workspace(
        str(repo_dir(ctx.workspace, recipe.project)), recipe.features.service.name, recipe.feature_names())
    return client.get([row])[0]


def _typed_row(ctx: "RunContext", entity: dict[str, Any]) -> dict[str, Any]:
    from framework.backends.feast.specs import join_keys

    types = {e.join_keys[0]: e.value_type for e in ctx.recipe.features.entities.values()}
    keys = join_keys(ctx.recipe)
    missing = [k for k in keys if k not in entity]
    unknown = [k for k in entity if k not in keys]
    if missing or unknown:
        raise BackendError(
            f"features.service: the lookup needs exactly the join keys {keys}; "
            f"missing {missing}, unknown {unknown}. Example: `loom features get recipe={ctx.recipe.name} {keys[0]}=42`."
        )
    try:
        return {k: _CASTS[types[k]](v) if isinstance(v, str) else v for k, v in entity.items()}
    except ValueError as exc:
        raise BackendError(f"features.entities: a join key value does not fit its type: {exc}") from exc


def _require_repo(ctx: "RunContext") -> None:
    from framework.backends.feast.repo import has_registry, registry_path, repo_dir

    path = registry_path(ctx.workspace, ctx.recipe.project)
    if ctx.recipe.features.store.registry:  # a SQL registry: the repo written at apply
        path = repo_dir(ctx.workspace, ctx.recipe.project) / "feature_store.yaml"
    if not has_registry(ctx.recipe, ctx.workspace) or not path.exists():
        raise BackendError(f"No Feast registry at {path}: run `loom launch recipe={ctx.recipe.name}` first.")
