"""MlflowRegistryBackend: checks quality gates, registers the trained model with the candidate alias."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from framework.backends.model_registry import lineage
from framework.backends.model_registry.gates import check_gates, raise_if_failed
from framework.backends.model_registry.tracking import (
    TAG_ADDRESS,
    TAG_FINGERPRINT,
    TAG_GATES,
    TAG_MODEL_URI,
    recipe_client,
)
from framework.errors import BackendError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from framework.backends.base import RunContext
    from framework.compile.plan import Step

TRAIN = "training.train"


class MlflowRegistryBackend:
    """Kinds ``training.gates`` and ``registry.register``.

    Gates passed are recorded as the training run's ``loom.gates_fingerprint`` tag; a registered
    version carries its step fingerprint as the model-version tag ``loom.fingerprint``. The new
    version gets ``registry.candidate_alias``; the champion alias moves only through ``promote``.
    """

    kinds: ClassVar[tuple[str, ...]] = ("training.gates", "registry.register")

    def observe(self, step: "Step", ctx: "RunContext") -> str | None:
        """The fingerprint MLflow holds for ``step``, or None."""
        if step.kind == "training.gates":
            return self._observe_gates(step, ctx)
        return self._observe_register(step, ctx)

    def apply(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        """Check the gates, or register the trained model; return the step's outputs."""
        if step.kind == "training.gates":
            return self._apply_gates(step, ctx)
        return self._apply_register(step, ctx)

    def delete(self, address: str, ctx: "RunContext") -> None:
        """Forget gate results, or delete the versions registered for ``address`` (never the champion)."""
        from framework.backends.model_registry.observe import open_experiment

        if open_experiment(ctx) is None:
            return
        client = recipe_client(ctx.recipe, Path(ctx.workspace))
        if address.startswith("training.gates"):
            for run in _train_runs(ctx):
                if TAG_GATES in run.data.tags:
                    client.delete_tag(run.info.run_id, TAG_GATES)
            return
        _delete_versions(client, ctx, address)

    # training.gates ------------------------------------------------------------------------

    def _observe_gates(self, step: "Step", ctx: "RunContext") -> str | None:
        runs = _train_runs(ctx)
        if any(r.data.tags.get(TAG_GATES) == step.fingerprint for r in runs):
            return step.fingerprint
        return next((r.data.tags[TAG_GATES] for r in runs if TAG_GATES in r.data.tags), None)

    def _apply_gates(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        train = _train_outputs(step, ctx)
        results = check_gates(ctx.recipe.training.gates, train.get("metrics", {}))
        for r in results:
            mark = "ok  " if r["passed"] else "FAIL"
            value = "n/a" if r["value"] is None else f"{r['value']:.4f}"
            bounds = " and ".join(b for b in (f">= {r['min']}" if r["min"] is not None else "",
                                              f"<= {r['max']}" if r["max"] is not None else "") if b)
            ctx.progress(f"gate {mark} {r['metric']} {value} (needs {bounds})")
        raise_if_failed(results, ctx.recipe.model_id)
        if train.get("run_id"):
            recipe_client(ctx.recipe, Path(ctx.workspace)).set_tag(train["run_id"], TAG_GATES,
                                                                    step.fingerprint)
        return {"passed": True, "results": results, "run_id": train.get("run_id"),
                "model_path": train.get("model_path")}

    # registry.register ---------------------------------------------------------------------

    def _observe_register(self, step: "Step", ctx: "RunContext") -> str | None:
        from framework.backends.model_registry.observe import store_exists
        from framework.backends.model_registry.versions import address_versions

        if not store_exists(ctx):
            return None
        client = recipe_client(ctx.recipe, Path(ctx.workspace))
        versions = address_versions(client, ctx.recipe.model_id, step.address)
        if any(v.tags.get(TAG_FINGERPRINT) == step.fingerprint for v in versions):
            return step.fingerprint
        return versions[0].tags.get(TAG_FINGERPRINT) if versions else None

    def _apply_register(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        from framework.backends.model_registry.versions import version_with_tag

        train = _train_outputs(step, ctx)
        run_id = train.get("run_id")
        if not run_id:
            raise BackendError(f"{step.address}: no trained model in this run: the 'training.train' "
                               "step has no output. Run the whole plan "
                               f"(`loom launch recipe={ctx.recipe.name}`).")
        client = recipe_client(ctx.recipe, Path(ctx.workspace))
        name, alias = ctx.recipe.model_id, ctx.recipe.registry.candidate_alias
        version = version_with_tag(client, name, TAG_FINGERPRINT, step.fingerprint)
        if version is None or version.run_id != run_id:
            version = self._register(client, step, ctx, run_id)
        client.set_registered_model_alias(name, alias, version.version)
        ctx.progress(f"registered {name} version {version.version} as '{alias}' "
                     f"(champion unchanged; promote with `loom registry promote recipe={ctx.recipe.name} "
                     f"--version {version.version}`)")
        model_path = train.get("model_path") or self._download(ctx, name, version.version)
        return {"model_name": name, "version": str(version.version),
                "model_uri": f"models:/{name}/{version.version}", "run_id": run_id,
                "model_path": model_path, "alias": alias, "contract": train.get("contract"),
                "profile_path": self._profile(ctx, run_id, Path(model_path).parent)}

    def _profile(self, ctx: "RunContext", run_id: str, target: Path) -> str | None:
        # Beside the booster, so the replicas that load it bin traffic in its bins.
        from framework.backends.model_registry.tracking import tracking_uri
        from framework.backends.model_registry.versions import reference_profile_path

        return reference_profile_path(tracking_uri(ctx.recipe, Path(ctx.workspace)), run_id, target)

    def _register(self, client: "MlflowClient", step: "Step", ctx: "RunContext", run_id: str) -> Any:
        from framework.backends.model_registry.versions import register_version

        run = client.get_run(run_id)
        model_uri = run.data.tags.get(TAG_MODEL_URI)
        if not model_uri:
            raise BackendError(f"MLflow run {run_id} has no logged model ({TAG_MODEL_URI} tag); "
                               f"retrain with `loom launch recipe={ctx.recipe.name}` so the model is logged.")
        recipe_fp, _ = lineage.recipe_identity(ctx)
        tags = {TAG_FINGERPRINT: step.fingerprint, TAG_ADDRESS: step.address,
                "loom.recipe": ctx.recipe.name, "loom.recipe_fingerprint": recipe_fp,
                "loom.train_fingerprint": run.data.tags.get(TAG_FINGERPRINT, ""),
                **contract_tags(_train_outputs(step, ctx).get("contract"))}
        try:
            return register_version(client, ctx.recipe.model_id, model_uri, run_id, tags)
        except Exception as exc:  # MlflowException or a remote server's HTTP errors
            raise BackendError(f"MLflow could not register model '{ctx.recipe.model_id}' "
                               f"from run {run_id}: {exc}") from exc

    def _download(self, ctx: "RunContext", name: str, version: str) -> str:
        from framework.backends.model_registry.tracking import tracking_uri
        from framework.backends.model_registry.versions import resolve_model

        return resolve_model(tracking_uri(ctx.recipe, Path(ctx.workspace)), name, version)["model_path"]


def contract_tags(contract: dict[str, Any] | None) -> dict[str, str]:
    """Version tags that say which contract a version keeps (the whole one is in its run)."""
    if not contract:
        return {}
    features = ",".join(f"{f['name']}:{f['type']}" for f in contract["features"])
    return {"loom.contract": str(contract["major"]), "loom.task": contract["task"],
            "loom.features": features[:4000]}


def _train_outputs(step: "Step", ctx: "RunContext") -> dict[str, Any]:
    """The training step's outputs: the direct upstream's, else (for register) via the gates' outputs."""
    train = ctx.upstream(step, TRAIN) or ctx.outputs.get(TRAIN, {})
    if not train.get("run_id"):
        gates = ctx.upstream(step, "training.gates")
        train = {**gates, **train} if gates.get("run_id") else train
    return train


def _train_runs(ctx: "RunContext") -> list[Any]:
    from framework.backends.model_registry.observe import step_runs

    return step_runs(ctx, TRAIN)


def _delete_versions(client: "MlflowClient", ctx: "RunContext", address: str) -> None:
    from framework.backends.model_registry.versions import address_versions

    champion = ctx.recipe.registry.champion_alias
    for version in address_versions(client, ctx.recipe.model_id, address):
        full = client.get_model_version(version.name, version.version)
        if champion in (full.aliases or []):
            # The champion is serving traffic: keep it, but it no longer counts as this step's result.
            client.delete_model_version_tag(version.name, version.version, TAG_FINGERPRINT)
            client.delete_model_version_tag(version.name, version.version, TAG_ADDRESS)
        else:
            client.delete_model_version(version.name, version.version)
