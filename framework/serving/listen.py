"""A Loom replica's own listeners on its node's address, as every other Ray server.

Ray Serve 2.60 starts a gRPC server in each replica for calls between deployments and binds it to
every interface (``replica.py``: ``add_port_to_grpc_server(self._server, "[::]:0")``), while Ray's
own servers bind to the node IP (``--node-ip-address``: 127.0.0.1 on the workspace's head). The
server checks the cluster's token, but it should not be reachable from other machines when the
head is loopback-only. Serve constructs the deployment's class before it starts that server, so
the replica's ``__init__`` calls ``bind_to_node_ip()`` and the server binds to the node IP
instead (a cluster's other nodes reach it there, as they reach the rest of Ray).
"""

from __future__ import annotations

from typing import Any

_ANY = "[::]:"


def bind_to_node_ip() -> bool:
    """Make this replica's inter-deployment gRPC server bind to the node IP; True when it will.

    Does nothing (False) outside a Serve replica or on a Ray without that call.
    """
    try:
        import ray
        from ray.serve._private import replica
    except ImportError:
        return False
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "_loom_node_ip", None):
        return bool(original)
    ip = ray.util.get_node_ip_address()
    host = f"[{ip}]" if ":" in ip else ip

    def add_port(server: Any, address: str) -> int:
        if address.startswith(_ANY):
            address = f"{host}:{address[len(_ANY):]}"
        return original(server, address)

    add_port._loom_node_ip = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port
    return True
