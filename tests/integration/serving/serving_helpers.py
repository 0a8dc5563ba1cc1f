"""Helpers for the serving tests: a composed recipe, tiny trained boosters, Serve on a free port."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
FEATURES = ["tenure_months", "monthly_charges", "contract_months", "support_calls",
            "payment_delay_days"]


def compose_recipe(name: str = "churn", overrides: list[str] | None = None, root: Path = ROOT) -> Any:
    """The recipe composed with Hydra from ``root``'s recipes/ and conf/, secrets as env refs."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from framework.spec import Recipe

    with initialize_config_dir(config_dir=str(root / "recipes"), version_base="1.3"):
        cfg = compose(name, overrides=[f"hydra.searchpath=[file://{root / 'conf'}]",
                                       *(overrides or [])])
    data = OmegaConf.to_container(cfg, resolve=False)
    for entry in data["serving"]["auth"]["api_keys"]:
        entry["key"] = {"env": "LOOM_API_KEY"}
    return Recipe.model_validate(data)


def latest_features(data_dir: Path):
    """The churn features' latest snapshot per customer (what a materialized online store holds)."""
    import pandas as pd

    frame = pd.read_parquet(data_dir / "churn" / "features.parquet")
    return frame.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")


def train_booster(data_dir: Path, out: Path, rounds: int = 8, depth: int = 3, seed: int = 0) -> Path:
    """A tiny XGBoost churn model trained in-process and saved as UBJ (the rollout benchmark's)."""
    import sys

    bench = str(ROOT / "scripts" / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import bench_rollout

    return bench_rollout.train_booster(data_dir, out, rounds, depth, seed)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, body: Any = None, key: str | None = None, method: str | None = None,
         headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, dict, Any]:
    """One HTTP request; returns ``(status, headers, parsed JSON body or text)``."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    if key:
        hdrs["Authorization"] = f"Bearer {key}"
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, rh, text = resp.status, _lower(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        status, rh, text = err.code, _lower(err.headers), err.read().decode()
    try:
        return status, rh, json.loads(text)
    except ValueError:
        return status, rh, text


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def online_rows(ctx: Any, ids: list[str]) -> list[dict[str, Any]]:
    """The online features Feast holds for these customers (through Loom's serving client)."""
    from framework.backends.feast.online import OnlineFeatureClient
    from framework.backends.feast.repo import repo_dir

    recipe = ctx.recipe
    return OnlineFeatureClient.from_workspace(
        str(repo_dir(ctx.workspace, recipe.project)), recipe.features.service.name,
        recipe.feature_names()).get([{"customer_id": i} for i in ids])


def predict_rows(booster: Any, rows: list[dict[str, Any]], names: list[str]) -> list[float]:
    """In-process probabilities for feature rows, in model input order."""
    import numpy as np

    return [float(p) for p in booster.inplace_predict(
        np.asarray([[row[f] for f in names] for row in rows], dtype=np.float32))]


class Load:
    """One client sending a request every ``every_s`` seconds from a thread; keeps
    ``(time sent, status, latency s, body)`` of each. ``body(i)``: the i-th request's JSON."""

    def __init__(self, url: str, key: str, body: Any = None, every_s: float = 0.04) -> None:
        self.url, self.key, self.every_s, self.records = url, key, every_s, []
        self.body = body or (lambda i: {"entities": {"customer_id": f"C{i % 900:06d}"}})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.every_s):
            sent = time.time()
            status, _, body = call(self.url, self.body(i), self.key)
            self.records.append((sent, status, time.time() - sent, body))
            i += 1

    def between(self, start: float, end: float) -> list[tuple[float, int, float, Any]]:
        return [r for r in self.records if start <= r[0] < end]

    def failed(self) -> list[tuple[float, int, float, Any]]:
        return [r for r in self.records if r[1] != 200]

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def head_processes(workspace: Path) -> list:
    """Every process of a workspace's Ray head and their children (HAProxy, replicas)."""
    import contextlib

    import psutil

    from framework.backends import ray_cluster

    found = {}
    for pid in ray_cluster.status(workspace)["pids"]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                found[p.pid] = p
    return list(found.values())


def head_listeners(workspace: Path) -> dict[str, str]:
    """``{"ip:port": "name (pid)"}`` of every listening TCP socket of the head's processes."""
    import psutil

    found = {}
    for proc in head_processes(workspace):
        try:
            conns, name = proc.net_connections(kind="inet"), proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                found[f"{c.laddr.ip.removeprefix('::ffff:')}:{c.laddr.port}"] = f"{name} ({proc.pid})"
    return found


def beyond_loopback(listeners: dict[str, str]) -> dict[str, str]:
    """The listeners not on 127.x or ::1."""
    return {a: who for a, who in listeners.items() if not a.startswith(("127.", "::1:"))}
