"""The embedded Ray head of a workspace: ``loom up`` / ``loom down`` / ``loom status``.

The head runs in the background with token auth on (the token in ``<workspace>/ray/auth_token``,
mode 0600), the metrics port pinned to ``env.metrics_export_port``, and Ray's temp files under the
workspace (a 0700 directory of this user's). It and everything it starts listen on 127.0.0.1 only:
Ray 2.60 binds its gRPC servers, agents and metrics exporter to the node IP, so the node IP is
given as 127.0.0.1 (``tests/integration/cluster`` checks every listening socket). ``<workspace>/ray/address`` holds the GCS address
(``127.0.0.1:PORT``) that drivers connect to. A busy port is an error naming the process holding it.

With ``env.dashboard`` (the default) the head runs Ray's dashboard on ``127.0.0.1:env.dashboard_port``:
the UI, Serve's REST API (``serve status``/``serve deploy``) and the Jobs API, all behind the same
token. ``ray_cli_env`` prints the environment the ``ray`` and ``serve`` CLIs need to reach it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from framework.backends import ray_ingress
from framework.backends.ports import fd_target, fds, listening, port_holder
from framework.errors import BackendError

#: Loom's own port block, below Linux's ephemeral range (32768+) and outside Ray's worker ports
#: (10002-19999). Ray's defaults collide here: 6379 is Redis's (the redis online store), and a plain
#: ``ray.init()`` on the same machine (tests, notebooks) takes 10001 and 52365.
GCS_PORT = 26379
CLIENT_SERVER_PORT = 26380
DASHBOARD_AGENT_PORT = 26381
#: Unix socket paths must stay under ~107 bytes; Ray nests ~60 bytes below its temp dir.
MAX_TEMP_DIR_LEN = 40


def _ray_dir(workspace: Path) -> Path:
    return Path(workspace).resolve() / "ray"


def temp_dir(workspace: Path) -> Path:
    """Ray's temp dir: ``<workspace>/ray/tmp`` when short enough, else ``/tmp/loom-ray-<hash>/r``.

    Either way its parent is a 0700 directory of this user's (``ensure_temp_dir``): Ray makes its
    temp and session dirs world-writable (0777, "so others can use it"), so the privacy has to
    come from the directory above.
    """
    inside = _ray_dir(workspace) / "tmp"
    if len(str(inside)) <= MAX_TEMP_DIR_LEN:
        return inside
    tag = hashlib.sha256(str(inside).encode()).hexdigest()[:10]
    return Path("/tmp") / f"loom-ray-{tag}" / "r"


def ensure_temp_dir(path: Path) -> Path:
    """Create Ray's temp dir inside a private parent: the parent created 0700, or checked to be
    this user's own directory that nobody else can write (then tightened to 0700).

    The short ``/tmp`` name is predictable: another user could create it first (or a symlink
    there) to read session files or plant sockets. Refuse then, instead of using it.

    Raises:
        BackendError: the parent or the dir is a symlink, not a directory, or another user's; or
            the parent is writable by others.
    """
    path = Path(path)
    ensure_private_dir(path.parent)
    _check_private(path, _mkdir(path), mode_too=False)  # Ray chmods it 0777 itself
    return path


def ensure_private_dir(path: Path) -> Path:
    """``path`` created 0700, or checked to be this user's own directory nobody else can write.

    Raises:
        BackendError: as ``ensure_temp_dir``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_private(path, _mkdir(path))
    return path


def _mkdir(path: Path) -> os.stat_result:
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    return os.lstat(path)


def _check_private(path: Path, st: os.stat_result, mode_too: bool = True) -> None:
    problem = _temp_dir_problem(st, mode_too)
    if problem:
        raise BackendError(
            f"Refusing Ray's temp dir {path}: {problem}. Someone else may have made it to read or "
            "plant Ray's session files. Remove it (or move the workspace to a shorter path, so the "
            "temp dir lives inside it) and run the command again."
        )
    if mode_too and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)  # ours and not writable by others: only tighten the read bits


def _temp_dir_problem(st: os.stat_result, mode_too: bool) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != os.getuid():
        return f"it is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if mode_too and st.st_mode & 0o022:
        return f"it is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def detected_cpus() -> int:
    """CPUs Ray detects when started without ``--num-cpus``: this process's cores, capped by cgroups."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def detected_gpus() -> int:
    """NVIDIA GPUs Ray would give the head on this machine: ``CUDA_VISIBLE_DEVICES`` when set,
    else the ``/dev/nvidiaN`` devices (what Ray's own detection finds, without importing it)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len([p for p in Path("/dev").glob("nvidia*") if p.name[len("nvidia"):].isdigit()])


def recorded_num_cpus(workspace: Path) -> float | None:
    """The CPUs the workspace's head was started with (``<workspace>/ray/num_cpus``), or None."""
    try:
        return float((_ray_dir(workspace) / "num_cpus").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def token_path(workspace: Path) -> Path:
    """The cluster's auth token file (mode 0600)."""
    return _ray_dir(workspace) / "auth_token"


#: Ray rewrites ``--node-ip-address=127.0.0.1`` to the machine's external address
#: (``services.resolve_ip_for_localhost``) unless multi-node clusters are off; off, the node IP is
#: 127.0.0.1 and Ray binds its servers, agents and metrics exporter there. Measured with ray 2.60.
SINGLE_NODE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def client_env(workspace: Path) -> dict[str, str]:
    """Environment a driver (or the ``ray``/``serve`` CLI) needs to talk to this head."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path(workspace)),
            **SINGLE_NODE_ENV}


def use_head_env(workspace: Path) -> None:
    """Make this process talk to the workspace's head: token auth env, and Ray's cached config refreshed.

    Setting ``RAY_AUTH_MODE`` after ``import ray`` is not enough: Ray caches its config at import, so
    ``ray.init(address=...)`` would connect without the token and fail. (Measured with ray 2.60.)
    """
    os.environ.update(client_env(workspace))
    if "ray" in sys.modules:
        from ray._raylet import Config

        Config.initialize("")
    use_loopback_node_ip()


def use_loopback_node_ip() -> None:
    """Keep this driver's node IP 127.0.0.1, for a head that listens on loopback: without it Ray
    swaps in the machine's external address and ``ray.init`` waits for a GCS there for minutes."""
    os.environ.update(SINGLE_NODE_ENV)
    if "ray" in sys.modules:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # read at import

def _write_token(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o600)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))


def _check_ports(recipe: Any) -> None:
    ports = {GCS_PORT: "Ray GCS (--port)", recipe.env.metrics_export_port: "env.metrics_export_port",
             DASHBOARD_AGENT_PORT: "Ray dashboard agent", CLIENT_SERVER_PORT: "Ray client server"}
    if recipe.env.ingress == "haproxy":
        ports.update({port: f"{what}, env.ingress: haproxy"
                      for port, what in ray_ingress.HAPROXY_PORTS.items()})
    if recipe.env.dashboard:  # a busy dashboard port would silently move it to the next one
        ports[recipe.env.dashboard_port] = "env.dashboard_port"
    for port, what in ports.items():
        holder = port_holder(port)
        if holder is not None:
            raise BackendError(
                f"Cannot start Ray: port {port} ({what}) is already in use by {holder}. "
                "Stop that process (`loom down` if it is another workspace's Ray) or point the "
                "recipe at it with env.ray_address."
            )


def _ray_cli() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def up(recipe: Any, workspace: Path, wait_s: float = 60.0) -> dict[str, Any]:
    """Start the workspace's Ray head in the background (no-op when it already runs).

    A head that already runs is kept as it is, even when the recipe asks for other settings
    (restarting it would stop every model it serves): ``settings_differ`` then says what differs
    and that ``loom down`` + ``loom up`` applies it.

    Returns:
        ``status(workspace)`` once the head (and its dashboard, with ``env.dashboard``) answers,
        plus ``settings_differ``: a sentence per setting of a running head that is not the recipe's.

    Raises:
        BackendError: a port is taken, or ``ray start`` failed (its output is in the message).
    """
    current = status(workspace)
    if current["running"]:
        return {**current, "settings_differ": settings_differ(recipe, workspace)}
    _check_ports(recipe)
    ray_dir, tmp = _ray_dir(workspace), temp_dir(workspace)
    ray_dir.mkdir(parents=True, exist_ok=True)
    ensure_temp_dir(tmp)
    _write_token(token_path(workspace))
    num_cpus = recipe.env.ray_num_cpus or detected_cpus()
    cmd = [_ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={GCS_PORT}",
           f"--metrics-export-port={recipe.env.metrics_export_port}",
           f"--dashboard-agent-listen-port={DASHBOARD_AGENT_PORT}",
           f"--ray-client-server-port={CLIENT_SERVER_PORT}", f"--num-cpus={num_cpus}",
           *_dashboard_flags(recipe.env), f"--temp-dir={tmp}", "--disable-usage-stats"]
    env = {**os.environ, **client_env(workspace), **ray_ingress.head_env(recipe.env.ingress, tmp)}
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise BackendError(f"`ray start` did not finish: {exc}. Reinstall with `make install`.") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BackendError(f"`ray start` failed (exit {done.returncode}):\n{tail}")
    (ray_dir / "address").write_text(f"127.0.0.1:{GCS_PORT}\n", encoding="utf-8")
    (ray_dir / "temp_dir").write_text(f"{tmp}\n", encoding="utf-8")
    (ray_dir / "metrics_port").write_text(f"{recipe.env.metrics_export_port}\n", encoding="utf-8")
    (ray_dir / "num_cpus").write_text(f"{num_cpus}\n", encoding="utf-8")
    (ray_dir / "ingress").write_text(f"{recipe.env.ingress}\n", encoding="utf-8")
    dashboard = ray_dir / "dashboard_port"
    if recipe.env.dashboard:
        dashboard.write_text(f"{recipe.env.dashboard_port}\n", encoding="utf-8")
    else:
        dashboard.unlink(missing_ok=True)
    return {**_wait_up(workspace, wait_s), "settings_differ": []}


def _dashboard_flags(env: Any) -> list[str]:
    """The dashboard on 127.0.0.1 only (Ray's default host, said explicitly), or none at all.

    Its HTTP server checks the token itself (``RAY_AUTH_MODE=token`` in the head's environment):
    every path but ``/``, ``/static/*``, the health checks and ``/api/authenticate`` answers 401
    without ``Authorization: Bearer <token>`` and 403 with a wrong one (Ray 2.60,
    ``dashboard/http_server_head.py`` + ``_private/authentication/http_token_authentication.py``).
    """
    if not env.dashboard:
        return ["--include-dashboard=false"]
    return ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={env.dashboard_port}"]


def _wait_up(workspace: Path, wait_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    info = status(workspace)
    while time.monotonic() < deadline:
        info = status(workspace)
        dashboard = info["dashboard_url"]
        if info["running"] and (not dashboard or listening(dashboard.removeprefix("http://"))):
            return info
        time.sleep(0.2)
    if info["running"]:
        raise BackendError(
            f"Ray's head runs but its dashboard did not answer on {info['dashboard_url']} within "
            f"{wait_s:.0f}s (its log: {info['temp_dir']}/session_latest/logs/dashboard.log). "
            "Set env.dashboard: false to run without it, then `loom down` and `loom up`.")
    raise BackendError(f"Ray started but did not answer on {head_address(workspace)} within {wait_s:.0f}s.")


def recorded_dashboard_port(workspace: Path) -> int | None:
    """The dashboard port the workspace's head was started with, or None (started without one)."""
    try:
        return int((_ray_dir(workspace) / "dashboard_port").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def settings_differ(recipe: Any, workspace: Path) -> list[str]:
    """What the running head was started with that the recipe's ``env`` asks otherwise, one
    sentence each; empty when they agree. The head keeps them until ``loom down`` + ``loom up``."""
    env, ray_dir, found = recipe.env, _ray_dir(workspace), []
    asked = env.dashboard_port if env.dashboard else None
    started = recorded_dashboard_port(workspace)
    if asked != started:
        found.append("env.dashboard: the running head has " + (
            f"its dashboard on port {started}" if started else "no dashboard") + ", the recipe asks "
            + (f"for port {asked}" if asked else "for none"))
    cpus = recorded_num_cpus(workspace)
    if env.ray_num_cpus and cpus is not None and float(env.ray_num_cpus) != cpus:
        found.append(f"env.ray_num_cpus: the running head has {cpus:g} CPUs, the recipe asks for "
                     f"{env.ray_num_cpus}")
    try:
        metrics = int((ray_dir / "metrics_port").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = env.metrics_export_port
    ingress = recorded_ingress(workspace)
    if ingress != env.ingress:
        found.append(f"env.ingress: the running head's Serve ingress is {ingress}, the recipe asks "
                     f"for {env.ingress}")
    if metrics != env.metrics_export_port:
        found.append(f"env.metrics_export_port: the running head exports metrics on {metrics}, "
                     f"the recipe asks for {env.metrics_export_port}")
    return [f"{line}; `loom down` then `loom up` restarts it with the recipe's settings "
            "(and stops what it serves)" for line in found]


def recorded_ingress(workspace: Path) -> str:
    """``env.ingress`` of the running head (``proxy`` for a head started before it was recorded)."""
    try:
        return (_ray_dir(workspace) / "ingress").read_text(encoding="utf-8").strip() or "proxy"
    except OSError:
        return "proxy"


def head_address(workspace: Path) -> str | None:
    """The GCS address of the workspace's head as `loom up` recorded it, or None."""
    try:
        return (_ray_dir(workspace) / "address").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _recorded_temp_dir(workspace: Path) -> Path:
    try:
        return Path((_ray_dir(workspace) / "temp_dir").read_text(encoding="utf-8").strip())
    except OSError:
        return temp_dir(workspace)


def _pids(tmp: Path) -> list[int]:
    """Processes of this head, found by its temp dir (never other Ray instances).

    A process belongs to the head when its command line names the temp dir, or (for the agents
    that rename themselves, e.g. ``ray::DashboardAgent``) when it holds a file open under it.
    """
    return [pid for pid in _other_pids() if _uses(pid, str(tmp))]


def _other_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and int(p.name) != os.getpid()]


def _uses(pid: int, tmp: str) -> bool:
    proc = Path("/proc") / str(pid)
    try:
        if tmp.encode() in (proc / "cmdline").read_bytes():
            return True
    except OSError:
        return False
    return any((fd_target(fd) or "").startswith(tmp + "/") for fd in fds(proc))


def status(workspace: Path) -> dict[str, Any]:
    """Whether the workspace's head runs, its address, temp dir, token file, metrics port, pids."""
    address, tmp = head_address(workspace), _recorded_temp_dir(workspace)
    pids = _pids(tmp) if address else []
    running = bool(address and pids and listening(address))
    try:  # written when the head starts
        started = (_ray_dir(workspace) / "address").stat().st_mtime if running else None
    except OSError:
        started = None
    dashboard = recorded_dashboard_port(workspace) if running else None
    return {"running": running, "address": address, "temp_dir": str(tmp), "started_at": started,
            "token_file": str(token_path(workspace)), "pids": pids,
            "metrics_url": _metrics_url(workspace) if running else None,
            "dashboard_url": f"http://127.0.0.1:{dashboard}" if dashboard else None}


def _metrics_url(workspace: Path) -> str | None:
    try:
        port = int((_ray_dir(workspace) / "metrics_port").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return f"http://127.0.0.1:{port}/metrics"


def down(workspace: Path, wait_s: float = 20.0, remove_temp: bool = False) -> dict[str, Any]:
    """Stop this workspace's head and its workers (other Ray instances on the machine are untouched).

    Args:
        workspace: the Loom workspace.
        wait_s: how long to wait for a clean exit before killing.
        remove_temp: also delete Ray's temp dir (session logs); kept by default for debugging.
    """
    tmp = _recorded_temp_dir(workspace)
    pids = _pids(tmp)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (wait_s if sig == signal.SIGTERM else 5)
        while time.monotonic() < deadline and _pids(tmp):
            time.sleep(0.2)
        pids = _pids(tmp)
        if not pids:
            break
    address_file = _ray_dir(workspace) / "address"
    address_file.unlink(missing_ok=True)
    if not pids:  # HAProxy's sockets are dead with it (its logs stay in the temp dir)
        shutil.rmtree(ray_ingress.socket_dir(tmp), ignore_errors=True)
    if remove_temp and not pids:
        shutil.rmtree(tmp, ignore_errors=True)
        if tmp.parent.name.startswith("loom-ray-"):  # the private /tmp parent made for it
            shutil.rmtree(tmp.parent, ignore_errors=True)
    return status(workspace)
