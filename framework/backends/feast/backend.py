"""FeastBackend: observes and applies entities, views, the feature service, materialization, datasets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from framework.backends.feast import markers, repo
from framework.backends.feast.specs import FINGERPRINT_TAG
from framework.errors import BackendError

if TYPE_CHECKING:
    from framework.backends.base import RunContext
    from framework.compile.plan import Step

#: Registry kinds: step kind → (state key, FeatureStore getter).
_REGISTRY = {
    "feast.entity": ("entities", "get_entity"),
    "feast.view": ("views", "get_feature_view"),
    "feast.service": ("services", "get_feature_service"),
}
_MARKED = ("feast.materialize", "training.dataset")


class FeastBackend:
    """The Feast 0.67 backend; one instance may serve many workspaces (stores are cached per config)."""

    kinds: ClassVar[tuple[str, ...]] = (
        "feast.entity", "feast.view", "feast.service", "feast.materialize", "training.dataset")

    def __init__(self) -> None:
        self._stores: dict[str, Any] = {}

    def store(self, ctx: "RunContext") -> Any:
        """The ``FeatureStore`` of ``ctx``'s workspace (opened once per config)."""
        key = repr((str(ctx.workspace), repo.config_dict(ctx.recipe, ctx.workspace)))
        if key not in self._stores:
            self._stores[key] = repo.open_store(ctx.recipe, ctx.workspace)
        return self._stores[key]

    def observe(self, step: "Step", ctx: "RunContext") -> str | None:
        """The fingerprint Feast's registry (or the step's marker file) holds; None when absent."""
        if step.kind in _MARKED:
            marker = markers.read_marker(_repo(ctx), step.address)
            if marker is None or not _outputs_exist(marker):
                return None
            return marker.get("fingerprint")
        obj = self._registry_object(step.kind, step.attrs["name"], ctx)
        return None if obj is None else obj.tags.get(FINGERPRINT_TAG)

    def outputs(self, step: "Step", ctx: "RunContext") -> dict[str, Any] | None:
        """What ``apply`` returned when this step was last applied (for steps found applied)."""
        if step.kind in _MARKED:
            marker = markers.read_marker(_repo(ctx), step.address)
            return None if marker is None else marker.get("outputs")
        return {"name": step.attrs["name"]} if self.observe(step, ctx) else None

    def apply(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        """Make Feast match ``step``; returns JSON-able outputs (see the module docs of each kind)."""
        handlers: dict[str, Callable[["Step", "RunContext"], dict[str, Any]]] = {
            "feast.entity": self._apply_entity, "feast.view": self._apply_view,
            "feast.service": self._apply_service, "feast.materialize": self._apply_materialize,
            "training.dataset": self._apply_dataset,
        }
        if step.kind not in handlers:
            raise BackendError(f"{step.address}: the Feast backend does not apply '{step.kind}' steps.")
        return handlers[step.kind](step, ctx)

    def delete(self, address: str, ctx: "RunContext") -> None:
        """Remove ``address`` from the Feast registry (or drop its marker and files)."""
        kind, name = _split(address)
        if kind == "training.dataset":
            marker = markers.remove_marker(_repo(ctx), address)
            if marker and marker.get("outputs", {}).get("path"):
                Path(marker["outputs"]["path"]).unlink(missing_ok=True)
            return
        if kind == "feast.materialize":
            markers.remove_marker(_repo(ctx), address)
            return
        self._delete_object(kind, name, ctx)

    # -- registry objects ------------------------------------------------------------------------

    def _registry_object(self, kind: str, name: str, ctx: "RunContext") -> Any:
        if not repo.has_registry(ctx.recipe, ctx.workspace):
            return None  # nothing applied yet; do not create a registry just to look
        from feast.errors import FeastObjectNotFoundException

        getter = getattr(self.store(ctx), _REGISTRY[kind][1])
        try:
            return getter(name, False)
        except FeastObjectNotFoundException:
            return None

    def _apply_objects(self, ctx: "RunContext", state: dict[str, Any],
                       pick: Callable[[dict[str, Any]], list[Any]]) -> None:
        """Apply the objects ``pick`` selects from ``state``, then record ``state`` in the repo."""
        from framework.backends.feast.objects import build

        objects = pick(build(state))
        repo.write_config(ctx.recipe, ctx.workspace)
        store = self.store(ctx)
        try:
            store.apply(objects)
            _sync_infra(store)
        except Exception as exc:  # noqa: BLE001 - Feast raises many types on apply
            names = ", ".join(getattr(o, "name", "?") for o in objects)
            raise BackendError(f"Feast refused to apply {names}: {exc}") from exc
        _pin_source_meta(store, state)
        repo.save_state(_repo(ctx), state)

    def _apply_entity(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        from framework.backends.feast.specs import entity_spec

        name = step.attrs["name"]
        state = repo.load_state(_repo(ctx))
        state["entities"][name] = entity_spec(ctx.recipe, name, step.fingerprint)
        self._apply_objects(ctx, state, lambda o: [o["entities"][name]])
        return {"name": name}

    def _apply_view(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        from framework.backends.feast.sources import parquet_source, raise_for_sources
        from framework.backends.feast.specs import source_spec, view_spec

        raise_for_sources(ctx.recipe, ctx.project_dir)
        name, source = step.attrs["name"], step.attrs["source"]
        path = parquet_source(ctx.recipe, ctx.project_dir, ctx.workspace, source)
        state = repo.load_state(_repo(ctx))
        state["sources"][source] = source_spec(ctx, source, str(path))
        state["views"][name] = view_spec(ctx.recipe, name, step.fingerprint)
        # Views sharing a source are applied together so their stored source times agree.
        siblings = [n for n, v in state["views"].items() if v["source"] == source]
        self._apply_objects(ctx, state, lambda o: [o["sources"][source], *(o["views"][n] for n in siblings)])
        if "push_source" not in state["views"][name]:
            _drop_push_source(self.store(ctx), name)
        return {"name": name, "source": source, "path": str(path)}

    def _apply_service(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        from framework.backends.feast.specs import service_spec

        name = step.attrs["name"]
        state = repo.load_state(_repo(ctx))
        missing = sorted({v for v, _ in ctx.recipe.feature_refs()} - set(state["views"]))
        if missing:
            raise BackendError(f"{step.address}: views {missing} are not applied yet; apply "
                               f"{', '.join('feast.view.' + v for v in missing)} first (plan order does).")
        state["services"][name] = service_spec(ctx.recipe, step.fingerprint)
        self._apply_objects(ctx, state, lambda o: [o["services"][name]])
        return {"name": name, "features": ctx.recipe.feature_names()}

    def _delete_object(self, kind: str, name: str, ctx: "RunContext") -> None:
        obj = self._registry_object(kind, name, ctx)
        state = repo.load_state(_repo(ctx))
        state[_REGISTRY[kind][0]].pop(name, None)
        if obj is not None:
            try:
                self.store(ctx).apply([], objects_to_delete=[obj], partial=False)
                if kind == "feast.view":
                    _drop_push_source(self.store(ctx), name)
            except Exception as exc:  # noqa: BLE001
                raise BackendError(f"Feast could not delete {kind} '{name}': {exc}") from exc
        repo.save_state(_repo(ctx), state)

    # -- marked steps ----------------------------------------------------------------------------

    def _apply_materialize(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        from framework.backends.feast.materialize import materialize_views
        from framework.backends.feast.sources import raise_for_sources

        raise_for_sources(ctx.recipe, ctx.project_dir)
        views = list(step.attrs["views"])
        read = {ctx.recipe.features.views[v].source for v in views}
        data = {s: fp for s, fp in ctx.source_fingerprints().items() if s in read}
        repo.write_config(ctx.recipe, ctx.workspace)
        before = markers.read_marker(_repo(ctx), step.address) or {}
        # Changed source bytes may hold rows older than the last window: start again from 1970.
        full = before.get("data") != data
        outputs = materialize_views(self.store(ctx), ctx, views, full=full)
        markers.write_marker(_repo(ctx), step.address, step.fingerprint, outputs, data=data)
        return outputs

    def _apply_dataset(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        from framework.backends.feast.dataset import build_dataset
        from framework.backends.feast.sources import raise_for_sources

        raise_for_sources(ctx.recipe, ctx.project_dir)
        digest = step.fingerprint.split(":", 1)[-1][:16]
        out = Path(ctx.workspace).resolve() / "datasets" / f"{ctx.recipe.name}-{digest}.parquet"
        outputs = build_dataset(self.store(ctx), ctx, out)
        old = markers.read_marker(_repo(ctx), step.address)
        markers.write_marker(_repo(ctx), step.address, step.fingerprint, outputs)
        old_path = (old or {}).get("outputs", {}).get("path")
        if old_path and old_path != outputs["path"]:
            Path(old_path).unlink(missing_ok=True)
        return outputs


def _sync_infra(store: Any) -> None:
    """Record the online tables in the registry's infra, as `feast apply` does (else `feast plan`
    reports them as still to create)."""
    infra = store._get_provider().plan_infra(store.config, store.registry.proto())
    store.registry.update_infra(infra, store.project, commit=True)


def _drop_push_source(store: Any, view: str) -> None:
    """Remove the push source of a view that no longer pushes (or is gone) from the registry.

    Feast 0.67 updates a view whose schema is unchanged in place and copies its stream source only
    when the new view has one, so turning ``push`` off would leave the old push source on the view.
    """
    from feast.data_source import PushSource

    from framework.backends.feast.specs import push_source_name

    name, reg, project = push_source_name(view), store.registry, store.project
    if hasattr(reg, "_prepare_registry_for_changes"):  # the file registry: edit its proto
        reg._prepare_registry_for_changes(project)
        changed = False
        for proto in reg.cached_registry_proto.feature_views:
            if (proto.spec.name == view and proto.spec.project == project
                    and proto.spec.HasField("stream_source") and proto.spec.stream_source.name == name):
                proto.spec.ClearField("stream_source")
                changed = True
        if changed:
            reg.commit()
    else:  # a SQL registry stores each view as written: write it without the source
        from feast.errors import FeatureViewNotFoundException

        try:
            current = reg.get_feature_view(view, project, allow_cache=False)
        except FeatureViewNotFoundException:
            current = None
        if current is not None and getattr(current.stream_source, "name", None) == name:
            current.stream_source = None
            reg.apply_feature_view(current, project, commit=True)
    if any(isinstance(d, PushSource) and d.name == name
           for d in reg.list_data_sources(project, allow_cache=False)):
        reg.delete_data_source(name, project, commit=True)


def _pin_source_meta(store: Any, state: dict[str, Any]) -> None:
    """Record the source times stored inside the views in the source specs (see ``objects._source``),
    and a push view's push source times in its view spec (``objects._push_source``)."""
    from feast.errors import FeastObjectNotFoundException

    for name, spec in state["views"].items():
        try:
            fv = store.registry.get_feature_view(name, store.project, allow_cache=False)
        except FeastObjectNotFoundException:
            continue  # recorded but gone from the registry: observe reports it absent
        src = fv.batch_source
        state["sources"][spec["source"]]["meta"] = [
            src.created_timestamp.isoformat(), src.last_updated_timestamp.isoformat()]
        push = fv.stream_source
        if spec.get("push_source") and push is not None and push.name == spec["push_source"]:
            spec["push_meta"] = [push.created_timestamp.isoformat(), push.last_updated_timestamp.isoformat()]


def _repo(ctx: "RunContext") -> Path:
    return repo.repo_dir(ctx.workspace, ctx.recipe.project)


def _split(address: str) -> tuple[str, str]:
    """``feast.view.profile`` → ``("feast.view", "profile")``; ``feast.materialize`` → (kind, "")."""
    for kind in (*_REGISTRY, *_MARKED):
        if address == kind or address.startswith(kind + "."):
            return kind, address[len(kind) + 1:]
    raise BackendError(f"{address}: not an address the Feast backend manages.")


def _outputs_exist(marker: dict[str, Any]) -> bool:
    path = marker.get("outputs", {}).get("path")
    return path is None or Path(path).is_file()
