"""One Ray per command: the recipe's cluster, a Loom-started head, or a quiet local Ray started here."""

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

def set_driver_env() -> None:
    """Set Loom's Ray environment in this process (before ``ray.init``), keeping values already set."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)


def resolve_address(recipe: "Recipe", workspace: Path) -> str | None:
    """The Ray address to connect to, or None to start an embedded local Ray."""
    if recipe.env.ray_address:
        return recipe.env.ray_address
    info = ray_cluster.status(workspace)  # a head that died leaves its address file behind
    return info["address"] if info.get("running") else None


@contextlib.contextmanager
def ray_for(recipe: "Recipe", workspace: Path,
            progress: Callable[[str], None] | None = None) -> Iterator[None]:
    """Make Ray available for the block; shut down only a Ray this call started or connected.

    Reuses a Ray already initialised in this process (the executor's, or a test session's) and leaves
    it running. Otherwise connects to ``env.ray_address`` or ``<workspace>/ray/address``, else starts
    a local Ray with quiet logs, no dashboard and its temp files under the workspace.

    Args:
        recipe: the recipe (``env.ray_address``, ``env.ray_num_cpus``).
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


def _init(recipe: "Recipe", workspace: Path) -> str:
    import ray

    address = resolve_address(recipe, workspace)
    runtime_env = {"env_vars": dict(RAY_ENV)}
    try:
        if address:
            if not recipe.env.ray_address:
                ray_cluster.use_head_env(workspace)
            ray.init(address=address, log_to_driver=False, runtime_env=runtime_env,
                     logging_level=logging.WARNING)
            return f"connected to {address}"
        temp_dir = str(ray_cluster.temp_dir(workspace))
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        ray.init(num_cpus=recipe.env.ray_num_cpus, include_dashboard=False, log_to_driver=False,
                 _temp_dir=temp_dir, runtime_env=runtime_env, logging_level=logging.WARNING,
                 configure_logging=True)
        return f"started a local Ray ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
        where = f"the Ray cluster at {address!r} (env.ray_address)" if address else "a local Ray"
        raise BackendError(
            f"Could not start or reach {where}: {exc}. "
            "Check env.ray_address (empty starts a local Ray) or that the cluster is up."
        ) from exc
