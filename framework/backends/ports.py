"""Who listens on a local port: free to bind, or the process holding it (read from ``/proc``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def port_holder(port: int, host: str = "127.0.0.1") -> str | None:
    """None when ``host:port`` is free to listen on, else who holds it: ``pid 123 (redis-server)``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers themselves bind: a port whose last connections linger in TIME_WAIT
        # (right after `loom down`) is free; only a listener holds it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return None
        except OSError:
            pass
    return _listener_of(port) or "another process (not visible to this user)"


def _listener_of(port: int) -> str | None:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit() and any(fd_target(fd) in inodes for fd in fds(pid_dir)):
            try:
                return f"pid {pid_dir.name} ({(pid_dir / 'comm').read_text().strip()})"
            except OSError:
                return f"pid {pid_dir.name}"
    return None


def fds(pid_dir: Path) -> list[Path]:
    try:
        return list((pid_dir / "fd").iterdir())
    except OSError:  # the process ended, or is not ours to look at
        return []


def fd_target(fd: Path) -> str | None:
    try:
        return os.readlink(fd)
    except OSError:  # the descriptor closed between listing and reading: skip it, not the process
        return None


def listening(address: str) -> bool:
    """Whether something accepts TCP connections at ``host:port`` (within half a second)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False
