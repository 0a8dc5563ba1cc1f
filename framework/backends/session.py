"""One Ray connection for a whole apply: training, serving and the rollout controller share it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from framework.backends.base import RunContext


@contextlib.contextmanager
def engine_session(ctx: RunContext, serving: bool) -> Iterator[None]:
    """Connect once for every step of an apply.

    Without ``env.ray_address`` every step runs on the workspace's tokened, loopback-only Ray head,
    started in the background when none runs (``ray_runtime.ray_for``), so Serve applications and
    the rollout controller outlive the command. With serving steps it is started first, so this
    process carries the head's token before any backend connects. A Ray already initialised in this process (a test session's) is
    used as it is.
    """
    import ray

    from framework.backends import ray_runtime

    if serving and not ray.is_initialized():
        from framework.backends.ray_serve.commands import cluster_up

        info = cluster_up(ctx.recipe, ctx.workspace)
        ctx.progress(f"ray: head at {info.get('address')}")
        for line in info.get("settings_differ") or ():  # kept running: restarting stops its models
            ctx.progress(f"ray: {line}")
    with ray_runtime.ray_for(ctx.recipe, ctx.workspace, progress=ctx.progress):
        yield
