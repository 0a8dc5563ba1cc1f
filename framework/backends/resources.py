"""Whether a plan's CPU demands fit the workspace's Ray head, checked at plan time without Ray.

Ray Train waits for a placement group with no bound and Serve for replicas it cannot place, so a
recipe that asks for more than the cluster has left hangs instead of failing. Before any step runs,
the preflight adds up what each phase of an apply holds at once and compares it with the embedded
head's CPUs:

- training (or one Tune trial) runs while whatever is served on the head keeps its replicas;
- the new serving config runs beside the other models served on the head.

What is served comes from the workspace state (only while the head runs: a stopped head serves
nothing). A remote cluster (``env.ray_address``) is only checked for an answer (a TCP connection):
its size is unknown without connecting, and plain ``loom plan`` never imports Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.errors import Problem

if TYPE_CHECKING:
    from framework.spec import Recipe

TRAIN_KINDS = frozenset({"training.train", "training.tune"})
SERVE_KINDS = frozenset({"serving.deploy", "rollout.step"})
#: CPUs Loom's own Serve actors reserve: the gateway app's replica and each rollout controller
#: (``ray_serve.config.GATEWAY_CPUS``, ``rollout.actor.ACTOR_CPU``; copied so plan imports neither).
GATEWAY_CPUS = 0.1
CONTROLLER_CPUS = 0.01
#: CPUs per replica assumed for a model another recipe deployed (its recipe is not loaded here).
DEFAULT_REPLICA_CPUS = 0.5
_EPS = 1e-9


@dataclass(frozen=True)
class Hold:
    """CPUs one thing holds on the cluster, and how it adds up (``churn: 3 replicas x 0.5``)."""

    what: str
    cpus: float

    def render(self) -> str:
        return f"{self.what} = {self.cpus:g}"


def resource_problems(recipe: "Recipe", kinds: set[str], workspace: Path) -> list[Problem]:
    """Problems for the phases of the plan that cannot fit the embedded head's CPUs.

    Args:
        recipe: the validated recipe.
        kinds: the step kinds the plan changes.
        workspace: the recipe's workspace (its head and its state).

    Returns:
        At most one Problem per phase (training, serving), each with the numbers and the fix.
    """
    if not kinds & (TRAIN_KINDS | SERVE_KINDS):
        return []
    if recipe.env.ray_address:  # its size is unknown here, but not whether it answers at all
        return _unreachable(recipe.env.ray_address)
    running = _head_running(workspace)
    total, where = head_cpus(recipe, workspace, running)
    served = served_on_head(workspace, recipe) if running else {}
    problems = _custom_problems(recipe, kinds)
    if kinds & TRAIN_KINDS:
        problems += _gpu_problem(recipe, kinds)
        problems += _training_problem(recipe, kinds, total, where, served)
    if kinds & SERVE_KINDS:
        problems += _serving_problem(recipe, total, where, served)
    return problems


def _gpu_problem(recipe: "Recipe", kinds: set[str]) -> list[Problem]:
    """GPU workers on a head that has fewer GPUs: Ray Train would wait for them forever."""
    from framework.backends import ray_cluster

    scaling = recipe.training.scaling
    if not scaling.use_gpu:
        return []
    need = scaling.num_workers if "training.train" in kinds else 1
    have = ray_cluster.detected_gpus()
    if have >= need:
        return []
    return [Problem(
        path="training.scaling.use_gpu", value=True, has_value=True,
        message=f"Training asks for {need} GPU(s) (one per worker), but the workspace's Ray head "
                f"has {have}: none is visible on this machine (CUDA_VISIBLE_DEVICES, /dev/nvidia*)"
                if have == 0 else
                f"Training asks for {need} GPU(s) (one per worker), but the workspace's Ray head "
                f"has {have}.",
        hint="Set training.scaling.use_gpu: false (or scaling=local) to train on CPUs here, lower "
             "training.scaling.num_workers, or point env.ray_address at a cluster with GPUs.")]


def _custom_problems(recipe: "Recipe", kinds: set[str]) -> list[Problem]:
    """Custom resources asked of the workspace's own head, which is started without any."""
    asked = []
    if kinds & TRAIN_KINDS and recipe.training.scaling.resources_per_worker:
        asked.append(("training.scaling.resources_per_worker", recipe.training.scaling.resources_per_worker))
    if kinds & SERVE_KINDS and recipe.serving.resources:
        asked.append(("serving.resources", recipe.serving.resources))
    return [Problem(
        path=key, value=dict(value), has_value=True,
        message=f"{key} asks for the custom resource(s) {', '.join(sorted(value))}, but the "
                "workspace's own Ray head (env.ray_address empty) has no custom resources: Ray "
                "would wait for them forever.",
        hint="Custom resources pin work to the nodes of a Ray cluster started with `ray start "
             "--resources=...`: set env.ray_address to that cluster (env=cluster), or remove "
             f"{key} to run here.") for key, value in asked]


def _unreachable(address: str) -> list[Problem]:
    """A Problem when nothing answers at ``env.ray_address`` (a TCP connection, a few seconds at
    most): the apply would otherwise do its Feast steps, then hang in ``ray.init``."""
    from framework.backends.ray_runtime import probe
    from framework.errors import BackendError

    try:
        probe(address)
    except BackendError as exc:
        message, _, hint = str(exc).partition(" Check ")
        return [Problem(path="env.ray_address", value=address, has_value=True, message=message,
                        hint=f"Check {hint}" if hint else None)]
    return []


def head_cpus(recipe: "Recipe", workspace: Path, running: bool) -> tuple[float, str]:
    """The embedded head's CPUs and where that number comes from: what the running head was
    started with, else what ``loom up`` would give it."""
    from framework.backends import ray_cluster

    recorded = ray_cluster.recorded_num_cpus(workspace) if running else None
    if recorded is not None:
        return float(recorded), "the running workspace head"
    if recipe.env.ray_num_cpus:
        return float(recipe.env.ray_num_cpus), "env.ray_num_cpus"
    return float(ray_cluster.detected_cpus()), "this machine's cores"


def _head_running(workspace: Path) -> bool:
    from framework.backends import ray_cluster

    return bool(ray_cluster.status(workspace).get("running"))


def served_on_head(workspace: Path, recipe: "Recipe") -> dict[str, list[Hold]]:
    """What each model the workspace state says is deployed holds: model id → its holds.

    The recipe's own model counts with its current ``serving.num_cpus_per_replica``; other
    recipes' models with the default (their recipes are not loaded here). A model whose rollout
    is running holds its ``surge_replicas`` as well.
    """
    from framework.state import WorkspaceState

    try:
        doc = WorkspaceState(workspace).read()
    except Exception:  # a damaged state is reported by the plan itself, not here
        return {}
    served: dict[str, list[Hold]] = {}
    for name, section in doc.get("recipes", {}).items():
        deploy = (section.get("steps") or {}).get("serving.deploy")
        if not deploy:
            continue
        model = section.get("model_id") or name
        app = section.get("app_name") or model
        own = name == recipe.name
        cpus = recipe.serving.num_cpus_per_replica if own else DEFAULT_REPLICA_CPUS
        replicas = _replicas(deploy.get("attrs", {}).get("replicas"))
        rolling = (doc.get("rollouts", {}).get(app) or {}).get("status") == "running"
        surge = (recipe.serving.surge_replicas if own else 1) if rolling else 0
        label = f"{model}: {replicas + surge} replicas x {cpus:g}"
        if surge:
            label += f" ({surge} surge: a rollout is running)"
        served[model] = [Hold(label, (replicas + surge) * cpus),
                         Hold(f"{model}: rollout controller", CONTROLLER_CPUS)]
    return served


def _replicas(value: Any) -> int:
    if isinstance(value, dict):  # autoscaling: at least min_replicas run
        return int(value.get("min_replicas", 1))
    return int(value or 1)


def _others(served: dict[str, list[Hold]], recipe: "Recipe") -> list[Hold]:
    return [h for model, holds in served.items() if model != recipe.model_id for h in holds]


def _gateway(served: dict[str, list[Hold]]) -> list[Hold]:
    return [Hold("gateway", GATEWAY_CPUS)] if served else []


def _training_problem(recipe: "Recipe", kinds: set[str], total: float, where: str,
                      served: dict[str, list[Hold]]) -> list[Problem]:
    scaling = recipe.training.scaling
    if "training.train" in kinds:
        need = scaling.num_workers * scaling.cpus_per_worker
        what = f"training needs {scaling.num_workers} worker(s) x {scaling.cpus_per_worker:g} CPU = {need:g}"
    else:
        need = scaling.cpus_per_worker
        what = f"a tuning trial needs training.scaling.cpus_per_worker = {need:g}"
    held = [h for holds in served.values() for h in holds] + _gateway(served)
    return _problem("training.scaling.cpus_per_worker", scaling.cpus_per_worker, what, need, held,
                    total, where, "Ray Train would wait for them forever",
                    "lower training.scaling.num_workers or cpus_per_worker, free CPUs on the head "
                    "(fewer serving.replicas; wait for a running rollout: "
                    f"`loom rollout status recipe={recipe.name}`), or give the head more CPUs "
                    "(env.ray_num_cpus, then `loom down` and `loom up`)")


def _serving_problem(recipe: "Recipe", total: float, where: str,
                     served: dict[str, list[Hold]]) -> list[Problem]:
    s = recipe.serving
    replicas = s.autoscaling.min_replicas if s.autoscaling else s.replicas
    surge = s.surge_replicas if recipe.model_id in served else 0  # a new candidate loads with a surge
    need = (replicas + surge) * s.num_cpus_per_replica + CONTROLLER_CPUS + GATEWAY_CPUS
    what = (f"serving needs {replicas} replica(s)" + (f" + {surge} surge" if surge else "")
            + f" x {s.num_cpus_per_replica:g} CPU + gateway {GATEWAY_CPUS:g} + rollout controller "
            f"{CONTROLLER_CPUS:g} = {need:g}")
    key = "serving.autoscaling.min_replicas" if s.autoscaling else "serving.replicas"
    return _problem(key, replicas, what, need, _others(served, recipe), total, where,
                    "Serve could not place the replicas",
                    "lower serving.replicas or serving.num_cpus_per_replica (fractional is fine), "
                    "serving.surge_replicas, or give the head more CPUs (env.ray_num_cpus, then "
                    "`loom down` and `loom up`)")


def _problem(key: str, value: Any, what: str, need: float, held: list[Hold], total: float,
             where: str, consequence: str, hint: str) -> list[Problem]:
    used = sum(h.cpus for h in held)
    free = total - used
    if need <= free + _EPS:
        return []
    holding = (f"; {used:g} held by " + ", ".join(h.render() for h in held)) if held else ""
    message = (f"{what[0].upper()}{what[1:]} CPU, but the Ray head has {total:g} CPUs ({where})"
               f"{holding}: {max(free, 0):g} free. {consequence}.")
    return [Problem(path=key, value=value, has_value=True, message=message, hint=hint[0].upper() + hint[1:] + ".")]


def require_free_cpus(need: float, what: str, sized_by: str, fix: str) -> None:
    """Refuse work whose Ray tasks or actors cannot get their CPUs now (Ray would wait forever).

    Args:
        need: CPUs the work holds at once.
        what: the command that asks, for the message: ``"batch"``.
        sized_by: the keys that size it: ``"batch.concurrency x batch.cpus_per_worker"``.
        fix: the ways out, for the message.

    Raises:
        BackendError: with what the work asks for and what the connected cluster has free.
    """
    import ray

    from framework.errors import BackendError

    free = float(ray.available_resources().get("CPU", 0.0))
    if need > free + _EPS:
        total = float(ray.cluster_resources().get("CPU", 0.0))
        raise BackendError(f"{what}: {need:g} CPU must be free ({sized_by}) and the Ray cluster has "
                           f"{free:g} of {total:g} free. {fix}")
