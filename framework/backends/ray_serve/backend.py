"""``ServeBackend``: the ``serving.deploy`` and ``rollout.step`` (strategy ``direct``) steps."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, ClassVar

from framework.backends.base import RunContext
from framework.backends.model_registry.tracking import redact_uri
from framework.errors import BackendError
from framework.serving.settings import proxy_request_timeout_s
from framework.state import WorkspaceState


class ServeBackend:
    """Deploys the recipe's Serve application; a new model version arrives as the candidate slot.

    ``serving.deploy``: no app yet → the registered version is the stable slot; an app with another
    stable version → the new version is loaded as the candidate with weight 0 (rollout steps move
    traffic). ``rollout.step`` with ``strategy: direct``: the candidate becomes stable in place.
    Fingerprints are kept in the recipe's ``serving`` records of the workspace state
    (``framework.state``) and trusted only while the running app still matches them.
    """

    kinds: ClassVar[tuple[str, ...]] = ("serving.deploy", "rollout.step")

    def __init__(self, features: dict[str, Any] | None = None, stats: bool = True,
                 retry_rejected: bool = False) -> None:
        # ``features`` overrides the replicas' lookup settings (tests, demos without Feast).
        self.features = features
        self.stats = stats
        # ``loom launch --retry-rejected``: load a version a rollout rejected as the candidate again.
        self.retry_rejected = retry_rejected

    # -- Backend protocol --------------------------------------------------------------------------

    def observe(self, step: Any, ctx: RunContext) -> str | None:
        """The stored fingerprint if the running app still matches it, else None."""
        self._check_kind(step)
        record = _records(ctx).get(step.address)
        if record is None or not _serve_running(ctx):
            return None
        from framework.backends.ray_serve import traffic

        config = traffic.app_configs().get(ctx.recipe.app_name)
        if config is None or _digest(config["args"]) != record.get("args_sha"):
            return None
        running = _slot_versions(config["deployments"][0].get("user_config") or {})
        if step.kind == "serving.deploy":
            # Still deployed while the version it loaded is in a slot (a promotion keeps it).
            matches = record.get("version") in running.values()
        else:
            matches = running == record.get("slots")
        return record["fingerprint"] if matches else None

    def apply(self, step: Any, ctx: RunContext) -> dict[str, Any]:
        """Deploy (``serving.deploy``) or promote (``rollout.direct``); returns the app's outputs."""
        self._check_kind(step)
        from framework.backends import ray_runtime
        from framework.backends.cluster_wait import require_resources
        from framework.backends.ray_serve import runtime

        ray_runtime.connect(ctx.recipe, ctx.workspace)
        require_resources(ctx.recipe.serving.resources, "serving.resources", "each replica")
        http = ctx.recipe.serving.http
        client = runtime.ensure_serve(http.host, http.port,
                                      proxy_request_timeout_s(ctx.recipe.serving))
        host, port = runtime.http_address(client)
        if (host, port) != (http.host, http.port):
            # Serve is one HTTP proxy per cluster: an earlier start decided its address.
            ctx.progress(f"note: Ray Serve already listens on {host}:{port}, not serving.http "
                         f"{http.host}:{http.port}; restart the cluster (`loom down`) to move it")
        if step.kind == "serving.deploy":
            return self._deploy(step, ctx)
        return self._promote(step, ctx)

    def delete(self, address: str, ctx: RunContext) -> None:
        """Remove the app for ``serving.deploy``; a rollout step leaves nothing to remove."""
        with WorkspaceState(ctx.workspace).recipe_transaction(ctx.recipe.name) as section:
            section["serving"].pop(address, None)
        if address.startswith("serving.deploy") and _serve_running(ctx):
            from framework.backends.ray_serve import traffic
            from framework.serving.stats import drop_stats
            from framework.streaming.control import stop_consumers

            stop_consumers(ctx.recipe.app_name)  # they score with this app's versions
            traffic.delete_app(ctx.recipe.app_name)
            traffic.drop_gateway_if_unused(ctx.recipe.serving.route_prefix)
            drop_stats(ctx.recipe.app_name)

    # -- steps -----------------------------------------------------------------------------------

    def _deploy(self, step: Any, ctx: RunContext) -> dict[str, Any]:
        from framework.backends.ray_serve import config as cfg
        from framework.backends.ray_serve import traffic

        model_id = ctx.recipe.app_name
        _refuse_foreign_route(ctx)
        from framework.backends.compiled import for_deploy

        model, predictor = for_deploy(ctx, _registered_model(step, ctx))
        current = traffic.current_user_config(model_id)
        rollout = WorkspaceState(ctx.workspace).rollout(model_id) or {}
        running = rollout.get("status") == "running"
        # An app lost with its cluster (`loom down`, a crash) comes back as it served, never with
        # the recipe's version promoted to stable unanalysed: a running rollout's last desired
        # config, else the champion (the version that served as stable) with this one beside it.
        restored = _restored(ctx, model, rollout) if current is None else None
        user_config = _next_user_config(restored or current, model, running)
        registry = _Registry.of(ctx, model)
        candidate = (user_config["slots"].get("candidate") or {}).get("version")
        if registry is not None and candidate == str(model["version"]) \
                and (user_config is not (current if current is not None else restored)
                     or self.retry_rejected):
            registry.refuse_rejected(candidate, self.retry_rejected)
        try:
            args = cfg.app_args(ctx.recipe, ctx.workspace, ctx.project_dir, self.features, self.stats,
                                _fallback_models(ctx))
        except ValueError as exc:
            raise BackendError(str(exc)) from exc
        ctx.progress(f"deploying Serve application '{model_id}' (stable "
                     f"{user_config['slots']['stable']['version']}, candidate "
                     f"{(user_config['slots']['candidate'] or {}).get('version', '-')})")
        # A new candidate: the extra replica starts first, so while Serve reconfigures replicas
        # one at a time to load the candidate, another replica keeps answering.
        base = current if current is not None else restored
        surge = current is not None and user_config is not base  # a new candidate
        if surge and not traffic.set_surge(model_id, True):
            ctx.progress(f"note: no room on the cluster for serving.surge_replicas more replicas of "
                         f"'{model_id}' within {traffic.SURGE_WAIT_S:g} s; going on without them "
                         "(each weight change then holds requests for ~0.1 s)")
            surge = False
        traffic.deploy_app(cfg.app_config(model_id, args, user_config, surge=surge))
        serving = ctx.recipe.serving
        traffic.ensure_gateway(serving.route_prefix, serving.max_body_bytes,
                               {"body_read_s": serving.timeouts.body_read_s,
                                "request_s": serving.timeouts.request_s})
        if restored is not None:
            ctx.progress(f"restored Serve application '{model_id}' as it served before it was "
                         f"lost: stable {user_config['slots']['stable']['version']}"
                         + (f", the rollout of {rollout.get('candidate', {}).get('version')} "
                            "resumes from the saved state" if running else ""))
        elif registry is not None and current is None:  # a first deploy: its stable is the champion
            registry.champion(user_config["slots"]["stable"]["version"])
        return {**self._record(step, ctx, args, user_config, version=str(model["version"])),
                "predictor": predictor}

    def _promote(self, step: Any, ctx: RunContext) -> dict[str, Any]:
        from framework.backends.ray_serve import traffic

        if step.attrs.get("strategy") != "direct":
            raise BackendError(
                f"{step.address}: ServeBackend applies only the 'direct' rollout strategy; "
                f"'{step.attrs.get('strategy')}' belongs to the rollout controller."
            )
        model_id = ctx.recipe.app_name
        current = traffic.current_user_config(model_id)
        if current is None:
            raise BackendError(f"{step.address}: no Serve application '{model_id}' to promote in; "
                               "apply serving.deploy first.")
        promoted = promote_candidate(current)
        if promoted != current:
            ctx.progress(f"promoting version {promoted['slots']['stable']['version']} to stable")
            traffic.update_user_config(model_id, promoted, surge=False)
        register = next((v for k, v in ctx.outputs.items() if k.startswith("registry.register")), {})
        registry = _Registry.of(ctx, register)
        if registry is not None:
            registry.champion(promoted["slots"]["stable"]["version"])
        args = traffic.app_configs()[model_id]["args"]
        return self._record(step, ctx, args, promoted)

    def _record(self, step: Any, ctx: RunContext, args: dict, user_config: dict,
                version: str | None = None) -> dict[str, Any]:
        contracts = {s["version"]: s["contract"] for s in user_config["slots"].values()
                     if s and s.get("contract")}
        with WorkspaceState(ctx.workspace).recipe_transaction(ctx.recipe.name) as section:
            section["serving"][step.address] = {
                "fingerprint": step.fingerprint, "args_sha": _digest(args),
                "slots": _slot_versions(user_config), "version": version, "at": time.time(),
                "contracts": contracts}
        return _outputs(ctx, user_config)

    def _check_kind(self, step: Any) -> None:
        if step.kind not in self.kinds:
            raise BackendError(f"{step.address}: ServeBackend does not handle kind '{step.kind}'.")


def _refuse_foreign_route(ctx: RunContext) -> None:
    """Refuse to deploy where another project's app already answers this model's route.

    Serve refuses a duplicate route prefix for the whole config, with a message that names no
    project; this says which app holds the route and how to give each project its own.
    """
    from framework.backends.ray_serve import traffic
    from framework.backends.ray_serve.config import model_route

    route = model_route(ctx.recipe.serving.route_prefix, ctx.recipe.model_id)
    holders = [name for name, cfg in traffic.app_configs().items()
               if cfg.get("route_prefix") == route and name != ctx.recipe.app_name]
    if holders:
        raise BackendError(
            f"serving.deploy: route {route} is already served by Serve application "
            f"'{holders[0]}' (another project on this Ray cluster). Give this project its own "
            "env.project and serving.route_prefix, e.g. env.project=teamb "
            "serving.route_prefix=/teamb."
        )


def _restored(ctx: RunContext, model: dict[str, Any], rollout: dict[str, Any]) -> dict | None:
    """What the app served before it was lost, for a recipe deployed before; None otherwise.

    A running rollout owns the app: its last desired ``user_config`` (stable, candidate, weights)
    comes back and its controller resumes. Else the registry's champion names the version that
    served as stable; the recipe's version, when another, is loaded beside it as a candidate.
    """
    section = WorkspaceState(ctx.workspace).recipe(ctx.recipe.name) or {}
    if not any(a.startswith("serving.deploy") for a in (section.get("serving") or {})):
        return None  # never deployed: a first deploy
    if rollout.get("status") == "running" and rollout.get("user_config"):
        return rollout["user_config"]
    registry = _Registry.of(ctx, model)
    champion = registry.promoter.champion() if registry is not None else None
    if champion is None or champion == str(model["version"]):
        return None
    from framework.backends.model_registry.tracking import tracking_uri
    from framework.backends.model_registry.versions import resolve_model
    from framework.backends.ray_serve.config import initial_user_config

    stable = resolve_model(tracking_uri(ctx.recipe, ctx.workspace), ctx.recipe.model_id, champion)
    return initial_user_config(stable)


def _next_user_config(current: dict | None, model: dict[str, Any],
                      rollout_running: bool = False) -> dict[str, Any]:
    """The new version as stable (first deploy) or as the weight-0 candidate (a later version).

    Returns ``current`` itself when the version is already loaded (nothing to change). When the
    version is the stable one and no rollout runs, a candidate left loaded at weight 0 (a rolled
    back one) is unloaded, so it is never rolled out again by going back to this recipe.
    """
    from framework.backends.ray_serve.config import initial_user_config, slot_of
    from framework.serving.control import UserConfig

    if current is None:
        return initial_user_config(model)
    doc, slot = UserConfig.parse(current), slot_of(model)
    if (slot.version == doc.slots.stable.version and doc.slots.candidate is not None
            and not rollout_running):
        slots = doc.slots.model_copy(update={"candidate": None})
        return doc.model_copy(update={"slots": slots, "candidate_weight": 0, "shadow_percent": 0,
                                      "config_version": doc.config_version + 1}).to_doc()
    loaded = [s.version for s in (doc.slots.stable, doc.slots.candidate) if s is not None]
    if slot.version in loaded:
        role = "stable" if slot.version == doc.slots.stable.version else "candidate"
        held = getattr(doc.slots, role)
        if (held.compiled_path, held.compiled_sha256) == (slot.compiled_path, slot.compiled_sha256):
            return current
        # The same version with another predictor (serving.predictor changed): swap it in place.
        slots = doc.slots.model_copy(update={role: held.model_copy(
            update={"compiled_path": slot.compiled_path, "compiled_sha256": slot.compiled_sha256})})
        return doc.model_copy(update={"slots": slots,
                                      "config_version": doc.config_version + 1}).to_doc()
    slots = doc.slots.model_copy(update={"candidate": slot})
    return doc.model_copy(update={"slots": slots, "candidate_weight": 0,
                                  "config_version": doc.config_version + 1}).to_doc()


def promote_candidate(current: dict[str, Any]) -> dict[str, Any]:
    """The candidate as stable (the old stable kept as ``previous`` for the fallback chain)."""
    from framework.serving.control import Slots, UserConfig

    doc = UserConfig.parse(current)
    if doc.slots.candidate is None:
        return current
    slots = Slots(stable=doc.slots.candidate, previous=doc.slots.stable)
    return doc.model_copy(update={"slots": slots, "candidate_weight": 0, "shadow_percent": 0,
                                  "config_version": doc.config_version + 1}).to_doc()


class _Registry:
    """The registry side of a deploy: the champion names the stable version; rejected stays out."""

    def __init__(self, ctx: RunContext) -> None:
        from framework.rollout.engines import RegistryPromoter

        self.ctx = ctx
        self.promoter = RegistryPromoter.for_recipe(ctx.recipe, ctx.workspace)

    @classmethod
    def of(cls, ctx: RunContext, model: dict[str, Any]) -> "_Registry | None":
        """The registry of a model the registry step registered (None for hand-made models)."""
        return cls(ctx) if model.get("model_name") else None

    def champion(self, version: str) -> None:
        """Point the champion alias at the version now serving as stable."""
        if self.promoter.champion() == str(version):
            return
        try:
            self.promoter.promote(str(version))
        except BackendError as exc:  # serving already changed: say so rather than fail the step
            self.ctx.progress(f"warning: {redact_uri(str(exc))}")
            return
        self.ctx.progress(f"registry: '{self.promoter.alias}' now names version {version}, "
                          "the one serving as stable")

    def refuse_rejected(self, version: str, retry: bool) -> None:
        """Refuse a version a rollout rejected, unless ``retry`` (which clears its rejection).

        Raises:
            BackendError: naming the version, why it was rejected, and the retry flag.
        """
        reason = self.promoter.rejection(version)
        if reason is None:
            return
        if not retry:
            raise BackendError(
                f"serving.deploy: version {version} of '{self.ctx.recipe.model_id}' was rejected "
                f"by an earlier rollout ({reason}); Loom does not roll it out again unasked. "
                "Change the recipe to train a new version, or retry it with "
                f"`loom launch recipe={self.ctx.recipe.name} --retry-rejected` (and the overrides "
                "you launched with).")
        self.promoter.clear_rejection(version)
        self.ctx.progress(f"registry: retrying version {version}, rejected before ({reason})")


def _fallback_models(ctx: RunContext) -> list[dict[str, str]]:
    """``serving.fallback`` levels of type ``model`` resolved through the registry to local UBJ files.

    A fallback model that cannot be resolved is skipped with a warning: the rest of the chain
    (rules, default) still answers, and the primary model is what this deploy is about.
    """
    levels = [lvl for lvl in ctx.recipe.serving.fallback if lvl.type == "model"]
    if not levels:
        return []
    from framework.backends.model_registry.tracking import tracking_uri
    from framework.backends.model_registry.versions import resolve_model

    uri, resolved = tracking_uri(ctx.recipe, ctx.workspace), []
    for i, level in enumerate(ctx.recipe.serving.fallback):
        if level.type != "model":
            continue
        try:
            model = resolve_model(uri, level.model_name, level.alias)
        except Exception as exc:  # BackendError or MLflow's own: a missing model or alias
            ctx.progress(f"warning: serving.fallback[{i}]: model '{level.model_name}@{level.alias}' "
                         f"is not available ({redact_uri(str(exc))}); that fallback level is skipped")
            continue
        resolved.append({"name": level.model_name, "version": model["version"],
                         "model_path": model["model_path"], "model_uri": model["model_uri"]})
    return resolved


def _registered_model(step: Any, ctx: RunContext) -> dict[str, Any]:
    model = ctx.upstream(step, "registry.register")
    if not model.get("version") or not model.get("model_path"):
        raise BackendError(
            f"{step.address}: the registry.register step gave no model version and local model file "
            "(expected outputs 'version' and 'model_path'); apply the registry step first."
        )
    return model


def _outputs(ctx: RunContext, user_config: dict[str, Any]) -> dict[str, Any]:
    from framework.backends.ray_serve.runtime import http_address

    # The proxy's real address: Serve may already run on another port than this recipe's.
    host, port = http_address()
    from framework.backends.ray_serve.config import gateway_route, model_route

    route = model_route(ctx.recipe.serving.route_prefix, ctx.recipe.model_id)
    slots = user_config["slots"]
    return {"app": ctx.recipe.app_name,
            "url": f"http://{host}:{port}{route}/predictions",
            "gateway_url": f"http://{host}:{port}{gateway_route(ctx.recipe.serving.route_prefix)}"
                           "/predictions",
            "stable_version": slots["stable"]["version"],
            "candidate_version": (slots.get("candidate") or {}).get("version")}


def _slot_versions(user_config: dict[str, Any]) -> dict[str, Any]:
    slots = user_config.get("slots") or {}
    return {role: (slots.get(role) or {}).get("version") for role in ("stable", "candidate")}


def _digest(args: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()


def _serve_running(ctx: RunContext) -> bool:
    try:
        from ray.serve.context import _get_global_client

        from framework.backends import ray_runtime

        # Observing never starts a cluster: no running Ray means nothing is deployed.
        if not ray_runtime.connect(ctx.recipe, ctx.workspace, start=False):
            return False
        return _get_global_client(raise_if_no_controller_running=False) is not None
    except BackendError:
        return False


def _records(ctx: RunContext) -> dict[str, Any]:
    """The recipe's serving records (a snapshot)."""
    return WorkspaceState(ctx.workspace).recipe(ctx.recipe.name)["serving"]
