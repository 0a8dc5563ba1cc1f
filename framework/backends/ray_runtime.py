"""The one place a Loom process connects to Ray: the recipe's cluster or the workspace's head.

Every Loom command that needs Ray goes through the workspace's tokened, loopback-only head
(``ray_cluster``), started in the background when none runs; none starts a private ``ray.init()``
(which would listen on the machine's external address and use the shared ``~/.ray`` token).
Every connection uses the same namespace and worker environment."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from framework.backends import ray_cluster
from framework.errors import BackendError

if TYPE_CHECKING:
    from framework.spec import Recipe

#: Environment every Loom driver and Ray worker runs with. The health-check interval matters most:
#: Train V2's default (2 s) makes every ``ray.train.report`` block about 2 s (see STACK.md).
RAY_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    # Tune's newer console output prints a config box and paths even at verbose=0; the classic
    # reporter is silent at verbose=0, so Loom's own progress lines are all a person sees.
    "RAY_AIR_NEW_OUTPUT": "0",
}

#: Namespace of every Loom driver (detached actors name theirs explicitly as well).
NAMESPACE = "loom"


def set_driver_env() -> None:
    """Set Loom's Ray environment in this process (before ``ray.init``), keeping values already set."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)


def resolve_address(recipe: "Recipe", workspace: Path) -> str | None:
    """The Ray address to connect to, or None when the workspace's head must be started first."""
    if recipe.env.ray_address:
        return recipe.env.ray_address
    info = ray_cluster.status(workspace)  # a head that died leaves its address file behind
    return info["address"] if info.get("running") else None


@contextlib.contextmanager
def ray_for(recipe: "Recipe", workspace: Path,
            progress: Callable[[str], None] | None = None) -> Iterator[None]:
    """Make Ray available for the block; disconnect afterwards only if this call connected.

    Reuses a Ray already initialised in this process (the executor's, or a test session's) and leaves
    it running. Otherwise connects to ``env.ray_address``, else to the workspace's head, starting it
    (``loom up``) when none runs; the head keeps running afterwards (``loom down`` stops it).

    Args:
        recipe: the recipe (``env.ray_address``, ``env.ray_num_cpus`` for a head started here).
        workspace: the workspace directory.
        progress: gets one line saying which Ray was started or reached, and how long it took.

    Raises:
        BackendError: when Ray cannot start or the address does not answer.
    """
    import ray

    set_driver_env()
    if ray.is_initialized():
        yield
        return
    started = time.perf_counter()
    where = _init(recipe, Path(workspace))
    if progress is not None:
        progress(f"ray: {where} in {time.perf_counter() - started:.1f} s")
    try:
        yield
    finally:
        ray.shutdown()


def connect(recipe: "Recipe", workspace: Path, start: bool = True) -> bool:
    """Connect this process to a Ray that outlives it: ``env.ray_address``, else the workspace's head.

    For commands whose work must stay running (Serve apps, the rollout controller). A Ray already
    initialised in this process is used as it is.

    Args:
        recipe: the validated recipe (``env.ray_address``, ``env.metrics_export_port``).
        workspace: the Loom workspace (``<workspace>/ray/address`` names the embedded head).
        start: start the embedded head when none runs; when False, return False instead.

    Raises:
        BackendError: the cluster cannot be reached or started.
    """
    import ray

    if ray.is_initialized():
        return True
    address = recipe.env.ray_address
    if not address:
        info = ray_cluster.status(workspace)
        if not info.get("running"):
            if not start:
                return False
            info = ray_cluster.up(recipe, workspace)
        address = info["address"]
    _attach(recipe, Path(workspace), address)
    return True


def _attach(recipe: "Recipe", workspace: Path, address: str) -> None:
    """``ray.init`` to a running cluster, with Loom's namespace, environment and quiet logs."""
    import ray

    set_driver_env()
    if not recipe.env.ray_address:
        ray_cluster.use_head_env(workspace)  # the head's token, so the driver authenticates
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 runtime_env={"env_vars": dict(RAY_ENV)}, logging_level=logging.WARNING)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
        raise BackendError(
            f"Cannot connect to Ray at {address} (env.ray_address or {workspace}/ray/address): "
            f"{type(exc).__name__}: {exc}. Start it with `loom up` or fix env.ray_address."
        ) from exc


def _init(recipe: "Recipe", workspace: Path) -> str:
    address = resolve_address(recipe, workspace)
    if address:
        _attach(recipe, workspace, address)
        return f"connected to {address}"
    info = ray_cluster.up(recipe, workspace)
    _attach(recipe, workspace, info["address"])
    cpus = ray_cluster.recorded_num_cpus(workspace)
    return (f"started the workspace head at {info['address']} ({cpus:g} CPUs, token auth, "
            "127.0.0.1 only; `loom down` stops it)" if cpus else f"started the workspace head at "
            f"{info['address']} (`loom down` stops it)")
