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

#: Pins an actor to the cluster's head node (a resource only the head has). Loom's gateway,
#: rollout controllers, per-model stats stores and the Serve config lock run there, beside Serve's
#: own controller: losing a worker node never takes the gateway (and its retries), a rollout's
#: loop or its analysis samples with it.
ON_HEAD = {"node:__internal_head__": 0.001}


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
    else:
        probe(address)
        if _is_loopback(address):  # a cluster on this machine: its head is on 127.0.0.1
            ray_cluster.use_loopback_node_ip()
        check_gcs(address)
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 runtime_env={"env_vars": dict(RAY_ENV)}, logging_level=logging.WARNING)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
        raise BackendError(
            f"Cannot connect to Ray at {address} (env.ray_address or {workspace}/ray/address): "
            f"{type(exc).__name__}: {exc}. Start it with `loom up` or fix env.ray_address."
        ) from exc
    if recipe.env.ray_address:
        try:
            check_nodes_run_loom(address)
        except BackendError:
            ray.shutdown()
            raise


#: Longest wait for every node of a cluster to say whether its workers can import Loom.
NODE_CHECK_S = 10.0


def check_nodes_run_loom(address: str, timeout_s: float = NODE_CHECK_S) -> None:
    """Fail when a node of the cluster cannot import Loom (its training workers and replicas would
    fail there, after Serve's retries); one task per live node, ``timeout_s`` at most.

    The probe is sent by value (a function Ray pickles without importing ``framework`` on the
    node). A node that does not answer within ``timeout_s`` (busy starting workers) is not held
    against the cluster.

    Raises:
        BackendError: naming the nodes that lack Loom, what they said, and the fix.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def can_import_loom() -> str:  # local, so Ray ships it by value: no import of Loom to run it
        import importlib

        try:
            importlib.import_module("framework.serving.settings")  # what every replica imports
        except ImportError as exc:
            return f"{type(exc).__name__}: {exc}"
        return ""

    probe = ray.remote(num_cpus=0, max_retries=0)(can_import_loom)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(): n for n in nodes}
    ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    for ref in pending:
        ray.cancel(ref, force=True)
    missing = []
    for ref in ready:
        try:
            said = ray.get(ref, timeout=1)
        except Exception:  # noqa: BLE001 - the node died meanwhile: not a missing install
            continue
        if said:
            node = refs[ref]
            missing.append(f"{node.get('NodeManagerAddress')} (node {node['NodeID'][:8]}): {said}")
    if missing:
        raise BackendError(
            f"Loom is not installed on {len(missing)} node(s) of the Ray cluster at {address} "
            f"(env.ray_address): {'; '.join(missing)}. Training workers and replicas run Loom's code "
            "on every node: install the same loom-ml (`pip install -c scripts/constraints.txt .` in "
            "the Python the node's `ray start` runs), or start the nodes from the image with Loom "
            "(env.kubernetes.image).")


#: Longest wait for env.ray_address to accept a connection before Loom says it cannot be reached.
PROBE_S = 5.0


def probe(address: str, timeout_s: float = PROBE_S) -> None:
    """Fail within ``timeout_s`` when nothing accepts connections at ``address``.

    ``ray.init`` retries an address that does not answer for minutes (measured with ray 2.60: still
    retrying after 120 s, printing GCS timeouts). A plain TCP connection says in seconds whether
    anything listens there: the GCS for ``host:port``, the Ray Client server for ``ray://host:port``.

    Raises:
        BackendError: the host does not resolve, refuses, or does not answer; names the key.
    """
    import socket

    host, port = _host_port(address)
    if host is None:
        return  # "auto" and other forms Ray resolves itself
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        why = (f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError)
               else (exc.strerror or str(exc)).lower())
        raise BackendError(
            f"Cannot reach the Ray cluster at {address} (env.ray_address): {host}:{port}: {why}. "
            "Check that its head runs (`ray status` there) and that this machine can reach that "
            "address, or set env.ray_address to a running cluster (empty: the workspace's own head)."
        ) from exc


#: Longest wait for a Ray GCS to answer one authenticated call before Loom gives up on it.
GCS_CHECK_S = 8.0


def check_gcs(address: str, timeout_s: float = GCS_CHECK_S) -> None:
    """Fail within ``timeout_s`` when ``address`` is not a Ray GCS that takes this driver's token.

    ``ray.init`` says neither: with a token the cluster refuses it retries for 20 s and then
    raises ``ConnectionError: Failed to connect to Ray cluster``; a port where something other than
    a GCS listens holds it for minutes (measured, ray 2.60). One GCS client call tells both apart
    at once; it runs in a daemon thread so a silent service cannot hold the command. Ray Client
    addresses (``ray://``) are left to ``ray.init``.

    Raises:
        BackendError: the token was refused (names the variables that carry one), or no GCS answered.
    """
    import threading

    if address.startswith("ray://") or _host_port(address)[0] is None:
        return
    from ray._raylet import GcsClient  # the client ray.init itself uses (pinned ray 2.60)
    from ray.exceptions import AuthenticationError

    outcome: dict[str, BaseException | None] = {}

    def call() -> None:
        try:
            GcsClient(address=address)
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    worker = threading.Thread(target=call, name="loom-gcs-check", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if "error" not in outcome:
        raise BackendError(
            f"Nothing at {address} (env.ray_address) answered as a Ray cluster's GCS within "
            f"{timeout_s:g} s: something else listens on that port. Give the head's GCS address "
            "(host:6379 by default) or its Ray Client address (ray://host:10001).")
    error = outcome["error"]
    if isinstance(error, AuthenticationError):
        raise BackendError(
            f"The Ray cluster at {address} (env.ray_address) refused this machine's token: it runs "
            "with token auth and a token of its own. Give this command that cluster's token: "
            "export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<its token> (or RAY_AUTH_TOKEN_PATH=<a "
            "file holding it>).") from error
    if error is not None:
        raise BackendError(
            f"The Ray cluster at {address} (env.ray_address) did not answer: "
            f"{type(error).__name__}: {str(error)[:300]}") from error


def _is_loopback(address: str) -> bool:
    host = _host_port(address)[0]
    return host is not None and (host == "localhost" or host.startswith("127.") or host == "::1")


def _host_port(address: str) -> tuple[str | None, int]:
    """(host, port) of a Ray address: ``ray://host[:10001]`` or ``host:port``; (None, 0) for the
    forms Ray resolves itself (``auto``, ``local``)."""
    rest, default = address, 6379
    if address.startswith("ray://"):
        rest, default = address[len("ray://"):], 10001
    rest = rest.split("/", 1)[0]
    if not rest or rest in ("auto", "local"):
        return None, 0
    host, _, port = rest.rpartition(":") if rest.count(":") == 1 or rest.startswith("[") else ("", "", "")
    if not host:
        return rest.strip("[]"), default
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return host.strip("[]"), default


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
