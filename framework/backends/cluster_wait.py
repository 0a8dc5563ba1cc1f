"""Waits on the Ray cluster that say what they wait for, for how long, and what holds the resources.

Ray Train's ``fit()`` blocks while its placement group is pending, with no bound and no output;
Tune's trials wait the same way. ``ResourceWait`` watches from a thread while such a call runs:
every ``interval_s`` of waiting it prints one line naming the pending demand, the cluster's CPUs
in use and what holds them (actors and their CPUs), and ``timeout_error`` turns the bound running
out into an error with the same numbers. Ray is imported inside the functions that use it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from framework.errors import BackendError

#: Seconds between progress lines while waiting, and between looks at the cluster.
REPORT_EVERY_S = 10.0
POLL_S = 1.0


class ResourceWait:
    """A watcher for one blocking call: ``with ResourceWait(...) as wait: trainer.fit()``.

    Args:
        what: what waits, as a person says it (``training``).
        demand: the resources it asks for, e.g. ``{"CPU": 1.0}`` per bundle.
        bundles: how many such bundles (Train workers, concurrent trials).
        bound_s: how long it may wait before the caller gives up.
        key: the recipe key that sets ``bound_s`` (named in the lines and the error).
        progress: receives each progress line.
        pending: returns how many of this call's requests are pending now; by default, placement
            groups created after the watch started that are PENDING while none of them has its
            resources (Train's one worker group; Tune's trials, of which some may queue normally).
    """

    def __init__(self, what: str, demand: dict[str, float], bundles: int, bound_s: float, key: str,
                 progress: Callable[[str], None], pending: Callable[[], int] | None = None,
                 interval_s: float | None = None, poll_s: float | None = None) -> None:
        self.what, self.demand, self.bundles = what, dict(demand), bundles
        self.bound_s, self.key, self.progress = bound_s, key, progress
        self.interval_s = REPORT_EVERY_S if interval_s is None else interval_s
        self.poll_s = POLL_S if poll_s is None else poll_s
        self._pending = pending
        self._before: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.waited_s = 0.0  # the longest continuous wait seen
        self.reports = 0

    def __enter__(self) -> "ResourceWait":
        self._before = set(_placement_groups())
        self._thread = threading.Thread(target=self._watch, name=f"loom-wait-{self.what}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def pending(self) -> int:
        """How many of this call's resource requests are pending now."""
        if self._pending is not None:
            return self._pending()
        states = [pg.get("state") for pg_id, pg in _placement_groups().items() if pg_id not in self._before]
        return 0 if "CREATED" in states else states.count("PENDING")

    def expired(self) -> bool:
        """Whether the wait has run past ``bound_s``."""
        return self.waited_s >= self.bound_s

    def _watch(self) -> None:
        since: float | None = None
        next_report = self.interval_s
        while not self._stop.wait(self.poll_s):
            try:
                waiting = self.pending() > 0
            except Exception:  # the driver is disconnecting; nothing left to watch
                return
            if not waiting:
                since, next_report = None, self.interval_s
                continue
            since = since if since is not None else time.monotonic() - self.poll_s
            self.waited_s = max(self.waited_s, time.monotonic() - since)
            if self.waited_s >= next_report:
                next_report += self.interval_s
                self.reports += 1
                self.progress(self.line())

    def wants(self) -> str:
        """``1 x {CPU: 1}``: the pending demand."""
        res = ", ".join(f"{k}: {v:g}" for k, v in sorted(self.demand.items()))
        return f"{self.bundles} x {{{res}}}"

    def line(self) -> str:
        """One progress line: what waits for what, for how long, and what holds the cluster."""
        left = max(0.0, self.bound_s - self.waited_s)
        return (f"{self.what}: waiting {self.waited_s:.0f} s for {self.wants()} on the Ray cluster; "
                f"{usage()}; giving up in {left:.0f} s ({self.key}={self.bound_s:g})")

    def timeout_error(self) -> BackendError:
        """The error for a wait that ran past its bound, with the numbers."""
        return BackendError(
            f"{self.what.capitalize()} waited {self.bound_s:g} s ({self.key}) for {self.wants()} and "
            f"the Ray cluster never had it free; {usage()}. Free CPUs (fewer serving.replicas, stop "
            "another model, let a running rollout finish: `loom rollout status recipe=NAME`), ask for less "
            "(training.scaling.num_workers / cpus_per_worker), give the head more CPUs "
            f"(env.ray_num_cpus, then `loom down` and `loom up`), or raise {self.key}."
        )


#: Ray's built-in resources: every other name in a demand is a custom one, which nodes only have
#: when started with ``ray start --resources``.
BUILTIN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


def require_resources(demand: dict[str, float], key: str, what: str,
                      gpu_key: str = "training.scaling.use_gpu") -> None:
    """Fail at once when no live node of the connected cluster has a GPU or a custom resource of
    ``demand`` in the amount one task asks, and the cluster's autoscaler (if any) cannot add a
    node that has it: Ray would wait for it forever. CPUs are waited for (``ResourceWait``).

    Args:
        demand: resources one worker or replica reserves.
        key: the recipe key that asks for its custom resources (named in the error).
        what: who asks, as a person says it (``each training worker``).
        gpu_key: the recipe key that asks for its GPU.

    Raises:
        BackendError: naming the resource, the key, what the cluster's nodes offer and the fix.
    """
    import ray

    wanted = {k: v for k, v in demand.items()
              if (k not in BUILTIN or k == "GPU") and not k.startswith("node:") and v > 0}
    if not wanted:
        return
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for name, amount in sorted(wanted.items()):
        best = max((float(n.get(name, 0.0)) for n in nodes), default=0.0)
        if best + 1e-9 >= amount or _autoscaler_can_add(name, amount):
            continue
        have = f"its largest node has {best:g}" if best else "no node of the cluster has it"
        if name == "GPU":
            raise BackendError(
                f"{gpu_key} asks {amount:g} GPU for {what}, but {have} and no autoscaler can add "
                f"one. Start a GPU node (`ray start --address=... --num-gpus=1`), point "
                f"env.ray_address at a cluster with GPUs, or set {gpu_key}: false.")
        offered = sorted({r for n in nodes for r in n if r not in BUILTIN and not r.startswith("node:")})
        raise BackendError(
            f"{key} asks {amount:g} of the custom resource {name!r} for {what}, but {have} "
            f"(custom resources on the cluster: {', '.join(offered) or 'none'}). Start a node "
            f"with `ray start --resources='{{\"{name}\": {amount:g}}}'` or change {key}.")


def _autoscaler_can_add(name: str, amount: float) -> bool:
    """Whether the cluster's autoscaler config has a node type with ``amount`` of ``name`` (a
    KubeRay or cluster-launcher autoscaler adds such a node on demand); False without one."""
    try:
        from ray._private.state import state

        most = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # noqa: BLE001 - no autoscaler state on this cluster
        return False
    return float(most.get(name, 0) or 0) >= amount


def _placement_groups() -> dict[str, dict[str, Any]]:
    import ray.util

    return dict(ray.util.placement_group_table())


def usage() -> str:
    """``2 CPUs, 1.61 in use (3 x ServeReplica:churn:LoomModel 0.5 each, ...), 0.39 free``."""
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    free = ray.available_resources().get("CPU", 0.0)
    held = holders()
    text = f"cluster {total:g} CPUs, {total - free:.2f} in use"
    if held:
        text += " by " + ", ".join(held)
    return text + f", {free:.2f} free"


def holders() -> list[str]:
    """What holds CPUs: live actors grouped by class and name, with their CPUs; [] when unknown.

    Reads the GCS actor table (Ray's State API needs the dashboard, which the head runs without).
    """
    try:
        actors = _live_actors()
    except Exception:  # a private API that changed: the totals still say how much is held
        return []
    counts: Counter[tuple[str, float]] = Counter()
    for name, cpus in actors:
        if cpus > 0:
            counts[(name, cpus)] += 1
    return [f"{n} x {name} ({cpus:g} CPU)" if n > 1 else f"{name} ({cpus:g} CPU)"
            for (name, cpus), n in sorted(counts.items(), key=lambda kv: -kv[0][1] * kv[1])]


def _live_actors() -> list[tuple[str, float]]:
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    accessor = state._connect_and_get_accessor()
    out = []
    for raw in accessor.get_actor_table(None, "ALIVE"):
        data = gcs_pb2.ActorTableData.FromString(raw)
        label = data.class_name.rsplit(".", 1)[-1] + (f" '{data.name}'" if data.name else "")
        out.append((label, float(dict(data.required_resources).get("CPU", 0.0))))
    return out
