"""A Loom replica's inter-deployment gRPC server binds to the node IP, not every interface."""

from __future__ import annotations

import pytest

from framework.serving.listen import bind_to_node_ip


class Server:
    def __init__(self) -> None:
        self.addresses: list[str] = []

    def add_insecure_port(self, address: str) -> int:
        self.addresses.append(address)
        return 4242


def test_serves_any_address_becomes_the_node_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray
    from ray.serve._private import replica

    monkeypatch.setattr(replica, "add_port_to_grpc_server", replica.add_port_to_grpc_server)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    assert bind_to_node_ip() and bind_to_node_ip()      # a second replica init patches once
    server = Server()
    assert replica.add_port_to_grpc_server(server, "[::]:0") == 4242   # what replica.py asks
    assert replica.add_port_to_grpc_server(server, "10.0.0.5:7000") == 4242   # left alone
    assert server.addresses == ["127.0.0.1:0", "10.0.0.5:7000"]


def test_an_ipv6_node_ip_is_bracketed(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray
    from ray.serve._private import replica

    monkeypatch.setattr(replica, "add_port_to_grpc_server", replica.add_port_to_grpc_server)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "fd00::5")
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    bind_to_node_ip()
    server = Server()
    replica.add_port_to_grpc_server(server, "[::]:0")
    assert server.addresses == ["[fd00::5]:0"]
