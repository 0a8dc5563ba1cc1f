"""``loom stream up | status | down``: a model's consumer actors, from the driver.

Consumers are detached actors named ``loom-stream-<app>-<i>`` in namespace ``loom`` (Ray restarts
one that crashes), so they outlive the command that started them. ``up`` is idempotent: it keeps
consumers whose settings are unchanged, replaces the others, and stops the extra ones when
``streaming.consumers`` shrinks. What runs is recorded in the workspace state under the recipe's
``stream`` key. ``down`` stops the consumers; the streams and their data stay on the bus.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from framework.backends.model_registry.tracking import redact_uri
from framework.backends.resources import require_free_cpus
from framework.errors import BackendError, Problem, RecipeError
from framework.state import WorkspaceState, now_text

if TYPE_CHECKING:
    from framework.backends.base import RunContext
    from framework.spec.streaming import Streaming

NAMESPACE = "loom"
#: Up to this many consumer actors are looked for when stopping (beyond any recipe's limit).
MAX_CONSUMERS = 64
READY_WAIT_S = 120.0


def actor_name(app_name: str, index: int) -> str:
    """The name of consumer ``index`` of an app."""
    return f"loom-stream-{app_name}-{index}"


def streaming_of(ctx: "RunContext") -> "Streaming":
    """The recipe's ``streaming`` section.

    Raises:
        RecipeError: the recipe has none, naming the key and how to add one.
    """
    if ctx.recipe.streaming is None:
        raise RecipeError([Problem(
            path="streaming", message="This recipe has no streaming section.",
            hint="Add `streaming: redis` to the recipe's defaults (conf/streaming/redis.yaml), or "
                 "pass +streaming=redis on the command line.")])
    return ctx.recipe.streaming


def consumer_args(ctx: "RunContext", index: int) -> dict[str, Any]:
    """The ``ConsumerArgs`` of consumer ``index`` (the password revealed, never logged)."""
    s, recipe = streaming_of(ctx), ctx.recipe
    password = s.bus.password.reveal() if s.bus.password is not None else None
    return {"app_name": recipe.app_name, "model_id": recipe.model_id, "consumer": f"c{index}",
            "url": s.bus.url, "password": password, "streams": s.names(recipe.app_name),
            "start": s.start, "id_field": s.event.id_field, "time_field": s.event.time_field,
            "max_id_chars": s.event.max_id_chars, "read_count": s.read_count,
            "block_ms": s.block_ms, "claim_idle_ms": s.claim_idle_ms,
            "sink_max_len": s.sink_max_len, "dedupe_ttl_s": s.dedupe_ttl_s, "sync_s": s.sync_s,
            "push_views": push_views(recipe)}


def push_views(recipe: Any) -> dict[str, dict[str, Any]]:
    """The recipe's ``push: true`` views as ``feast.push.Pusher`` takes them."""
    f = recipe.features
    return {name: {"keys": [k for e in view.entities for k in f.entities[e].join_keys],
                   "fields": dict(view.fields),
                   "timestamp_field": recipe.data.sources[view.source].timestamp_field}
            for name, view in f.views.items() if view.push}


def fingerprint(args: dict[str, Any]) -> str:
    """What a running consumer was started with (the password's digest only)."""
    shown = {**args, "password": hashlib.sha256((args.get("password") or "").encode()).hexdigest()}
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:16]


def check_bus(ctx: "RunContext") -> Any:
    """A blocking client of the recipe's Redis, after a ping.

    Raises:
        BackendError: the bus does not answer, naming ``streaming.bus.url`` and the fix.
    """
    from framework.streaming.bus import connect_sync

    s = streaming_of(ctx)
    password = s.bus.password.reveal() if s.bus.password is not None else None
    client = connect_sync(s.bus.url, password)
    try:
        client.ping()
    except Exception as exc:  # redis raises ConnectionError, AuthenticationError, TimeoutError...
        raise BackendError(f"The event bus at {redact_uri(s.bus.url)} (streaming.bus.url) does not "
                           f"answer: {type(exc).__name__}: {exc}. Start Redis there, or point "
                           "streaming.bus.url at one.") from None
    return client


def up(ctx: "RunContext", progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Start (or keep, or replace) the recipe's consumers; returns ``status``.

    Raises:
        RecipeError: no streaming section.
        BackendError: the model is not served, the bus does not answer, or the cluster lacks
            the CPUs the consumers reserve.
    """
    import ray

    from framework.backends.ray_runtime import connect

    s, recipe = streaming_of(ctx), ctx.recipe
    check_bus(ctx).close()
    connect(recipe, Path(ctx.workspace))
    if not _served(recipe.app_name):
        raise BackendError(f"'{recipe.model_id}' is not served, and consumers score events with "
                           f"the online app's versions: `loom launch recipe={recipe.name}` first.")
    wanted = {i: consumer_args(ctx, i) for i in range(s.consumers)}
    running = WorkspaceState(ctx.workspace).recipe(recipe.name).get("stream") or {}
    kept = running.get("consumers") or {}
    start, stop = [], []
    for i in range(MAX_CONSUMERS):
        handle = _actor(recipe.app_name, i)
        if i not in wanted:
            if handle is not None:
                stop.append(i)
            continue
        if handle is None or kept.get(str(i)) != fingerprint(wanted[i]):
            if handle is not None:
                stop.append(i)
            start.append(i)
    require_free_cpus(s.cpus_per_consumer * (len(start) - len(stop)), "stream",
                      "streaming.consumers x streaming.cpus_per_consumer",  # a replaced one frees its own
                      "Lower streaming.cpus_per_consumer or streaming.consumers, or free CPUs.")
    for i in stop:
        _stop(recipe.app_name, i)
    cls = ray.remote(_consumer_class())
    for i in start:
        cls.options(name=actor_name(recipe.app_name, i), namespace=NAMESPACE, lifetime="detached",
                    num_cpus=s.cpus_per_consumer, max_restarts=-1, max_concurrency=4).remote(wanted[i])
    deadline = time.monotonic() + READY_WAIT_S
    for i in start:
        ready = ray.get(_actor(recipe.app_name, i).ready.remote(max(deadline - time.monotonic(), 1)))
        if not ready["ready"]:
            for j in start:  # nothing half-started stays behind
                _stop(recipe.app_name, j)
            raise BackendError(f"Stream consumer {i} of '{recipe.model_id}' is not reading after "
                               f"{READY_WAIT_S:g} s: {ready['last_error'] or 'no error reported'}.")
    names = s.names(recipe.app_name)
    with WorkspaceState(ctx.workspace).recipe_transaction(recipe.name) as section:
        section["stream"] = {"consumers": {str(i): fingerprint(a) for i, a in wanted.items()},
                             "streams": names, "bus": redact_uri(s.bus.url), "at": now_text()}
    progress(f"stream: {len(start)} consumer(s) started, {len(wanted) - len(start)} kept, "
             f"{len([i for i in stop if i not in start])} stopped; events from {names['source']} "
             f"-> results to {names['sink']}")
    return status(ctx)


def status(ctx: "RunContext") -> dict[str, Any]:
    """Each consumer's counts and rate, the group's lag and pending, the streams' lengths."""
    import ray

    from framework.backends.ray_runtime import connect
    from framework.streaming.bus import group_info

    s, recipe = streaming_of(ctx), ctx.recipe
    names = s.names(recipe.app_name)
    client = check_bus(ctx)
    try:
        groups = client.xinfo_groups(names["source"]) if client.exists(names["source"]) else []
        info = group_info(groups, names["group"])
        lengths = {k: int(client.xlen(names[k])) for k in ("source", "sink", "dead_letter")}
    finally:
        client.close()
    consumers = []
    if connect(recipe, Path(ctx.workspace), start=False):
        for i in range(MAX_CONSUMERS):
            handle = _actor(recipe.app_name, i)
            if handle is not None:
                try:
                    consumers.append(ray.get(handle.stats.remote(), timeout=10))
                except Exception as exc:  # restarting, or gone
                    consumers.append({"consumer": f"c{i}", "ready": False,
                                      "last_error": f"{type(exc).__name__}"})
    return {"model_id": recipe.model_id, "streams": names, "group": info, "lengths": lengths,
            "consumers": consumers}


def down(ctx: "RunContext") -> dict[str, Any]:
    """Stop the recipe's consumers (each finishes its batch) and forget them; the streams stay."""
    from framework.backends.ray_runtime import connect

    recipe = ctx.recipe
    stopped = stop_consumers(recipe.app_name) if connect(recipe, Path(ctx.workspace), start=False) else []
    with WorkspaceState(ctx.workspace).recipe_transaction(recipe.name) as section:
        section.pop("stream", None)
    return {"model_id": recipe.model_id, "stopped": stopped}


def stop_consumers(app_name: str) -> list[dict[str, Any]]:
    """Stop every consumer of ``app_name`` on the connected cluster (``down``, and ``loom destroy``
    with the app); their final stats."""
    return [_stop(app_name, i) for i in range(MAX_CONSUMERS) if _actor(app_name, i) is not None]


def _served(app_name: str) -> bool:
    from framework.backends.ray_serve import traffic

    try:
        return app_name in traffic.app_configs()
    except BackendError:  # Serve is not running at all
        return False


def _consumer_class() -> Any:
    from framework.streaming.consumer import StreamConsumer

    return StreamConsumer


def _actor(app_name: str, index: int) -> Any:
    import ray

    try:
        return ray.get_actor(actor_name(app_name, index), namespace=NAMESPACE)
    except ValueError:
        return None


def _stop(app_name: str, index: int) -> dict[str, Any]:
    """Ask consumer ``index`` to stop after its batch, then end the actor (no restart)."""
    import ray

    handle = _actor(app_name, index)
    final: dict[str, Any] = {"consumer": f"c{index}"}
    if handle is None:
        return final
    try:
        final = ray.get(handle.stop.remote(), timeout=30)
    except Exception as exc:  # stuck or dead: it is killed anyway
        final["last_error"] = type(exc).__name__
    ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + 10
    while _actor(app_name, index) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    return final
