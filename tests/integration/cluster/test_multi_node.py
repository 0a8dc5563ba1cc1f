"""The churn recipe on a real two-node Ray cluster (issue 17), every engine real.

A head and a second node are started with ``ray start`` on this machine, each with its own temp
dir and working dir. The second node runs in its own mount namespace where the project directory
(the driver's workspace: recipes, data, ``.loom``) is an empty tmpfs, so anything Loom handed it
by a driver path would fail there. The stores are the ones a cluster shares: Redis online store,
a Feast SQL registry on a real PostgreSQL, Ray Train storage outside the workspace, and a real
``mlflow server``
(SQL backend, ``--serve-artifacts``).

Custom resources place the work: version 1 trains with two workers, one per node; version 2 (the
same model) with one worker pinned to the second node, to the same test AUC; the two replicas run
one per node. The recipe launches (``env=cluster store=redis``), serves from both nodes, rolls out a
canary and rolls it back. Then the second node is killed (SIGKILL of every process it runs) under
load: the head's replica keeps answering, and the gateway route loses no request.

Runs the CLI in subprocesses, as a person does, against the cluster (not the tests' session Ray).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import serving_helpers as H  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
KEY = "test-key-0123456789"
RAY = str(Path(sys.executable).with_name("ray"))
ROOT = Path(__file__).resolve().parents[3]

#: Lists the cluster's actors with their node (the head's state API) as JSON, from a driver.
ACTORS = """
import json, sys
import ray
from ray.util.state import list_actors, list_nodes
ray.init(address=sys.argv[1], logging_level="ERROR")
heads = {n.node_id: n.is_head_node for n in list_nodes(address=sys.argv[2])}
print(json.dumps([{"cls": a.class_name, "state": a.state, "on_head": heads.get(a.node_id)}
                  for a in list_actors(address=sys.argv[2], limit=1000)]))
"""


@dataclass
class Cluster:
    """A two-node Ray cluster on this machine, started for one test and stopped by its PIDs."""

    address: str
    dashboard: str
    metrics_port: int
    node2_http_port: int
    env: dict[str, str]
    temps: dict[str, Path] = field(default_factory=dict)

    def pids(self, node: str) -> list[int]:
        from framework.backends.ray_cluster import _pids

        return _pids(self.temps[node])

    def actors(self) -> list[dict]:
        done = subprocess.run([sys.executable, "-c", ACTORS, self.address, self.dashboard],
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def add_node(self, name: str, resources: dict[str, float], hide: list[Path],
                 http_port: int | None = None) -> None:
        """``ray start`` of one more node, with its own temp and working dirs, in a mount namespace
        where every directory of ``hide`` is an empty tmpfs. Its Serve proxy listens on
        ``http_port`` (a free port by default): each node's needs its own on this machine."""
        self.temps[name] = self.temps["head"].with_name(name)
        work = self.temps["head"].with_name(f"{name}-work")
        work.mkdir()
        env = {**self.env, "RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(http_port or H.free_port())}
        _ray_start([f"--address={self.address}", "--num-cpus=2", f"--resources={json.dumps(resources)}",
                    f"--metrics-export-port={H.free_port()}",
                    f"--dashboard-agent-listen-port={H.free_port()}", f"--temp-dir={self.temps[name]}"],
                   env, work, hide)


def _ray_start(args: list[str], env: dict[str, str], cwd: Path, hide: Sequence[Path] = ()) -> None:
    cmd = [RAY, "start", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args]
    if hide:  # a mount namespace where each directory of ``hide`` is an empty, private tmpfs
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'while [ "$1" != -- ]; do mount -t tmpfs -o mode=0700 loom-hidden "$1" || exit 1; '
               'shift; done; shift; exec "$@"', "sh", *map(str, hide), "--", *cmd]
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


@pytest.fixture
def cluster(project: Path):
    base = Path(tempfile.mkdtemp(prefix="loom-mn-", dir="/tmp"))  # short: Ray's socket paths
    token = base / "token"
    token.write_text(os.urandom(32).hex())
    token.chmod(0o600)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    # Not the session Ray's, nor the single-node mode a Loom driver sets in its own process for a
    # loopback head (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0): with it, `ray start --address` refuses
    # to join a second node.
    for var in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        env.pop(var, None)
    gcs, dashboard, metrics = H.free_port(), H.free_port(), H.free_port()
    found = Cluster(address=f"127.0.0.1:{gcs}", dashboard=f"http://127.0.0.1:{dashboard}",
                    metrics_port=metrics, node2_http_port=H.free_port(), env=env,
                    temps={"head": base / "head"})
    (base / "head-work").mkdir()
    try:
        _ray_start(["--head", f"--port={gcs}", "--num-cpus=2", '--resources={"loom_replica": 1}',
                    "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dashboard}", f"--metrics-export-port={metrics}",
                    f"--dashboard-agent-listen-port={H.free_port()}",
                    f"--ray-client-server-port={H.free_port()}", f"--temp-dir={found.temps['head']}"],
                   env, base / "head-work")
        found.add_node("node2", {"loom_replica": 1, "node2": 1}, hide=[project],
                       http_port=found.node2_http_port)
        yield found
    finally:
        for name in reversed(list(found.temps)):
            with contextlib.suppress(KeyError, OSError):
                for pid in found.pids(name):  # only this cluster's processes, by its temp dirs
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def _loom(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "framework", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)


def _version(url: str, body: dict | None = None) -> str:
    status, _, answer = H.call(url, body or {"entities": {"customer_id": "C000042"}}, KEY)
    assert status == 200, answer
    return answer["model_version"]


def test_churn_trains_serves_and_rolls_out_across_two_nodes_and_survives_losing_one(
        cluster: Cluster, project: Path, redis_server, postgres_server, mlflow_server,
        tmp_path_factory):
    from framework.rollout.status import status as rollout_status

    import make_data

    # 20,000 customers, so one worker's model and two workers' are compared on 3,000 test rows.
    make_data.main(["--out", str(project / "data"), "--customers", "20000", "--accounts", "1000"])
    shared = tmp_path_factory.mktemp("shared")  # what a cluster's shared stores hold
    url, _ = mlflow_server
    port = H.free_port()
    env = {**cluster.env, "RAY_ADDRESS": cluster.address, "LOOM_API_KEY": KEY,
           "LOOM_REDIS": str(redis_server), "LOOM_FEAST_REGISTRY": f"postgresql+psycopg://loom@{postgres_server}/feast",
           "LOOM_STORAGE_PATH": str(shared / "ray-results")}
    base = ["recipe=churn", "env=cluster", "store=redis", f"+registry.tracking_uri={url}",
            f"serving.http.port={port}", f"env.metrics_export_port={cluster.metrics_port}",
            "serving.replicas=2", "serving.num_cpus_per_replica=0.25", "serving.surge_replicas=0",
            "serving.cache.enabled=false", "training.model.num_boost_round=10",
            "+serving.resources={loom_replica: 1}"]  # one replica per node: each offers one
    # Version 1: two workers, one per node (before anything serves, each node's loom_replica).
    v1 = [*base, "training.scaling.num_workers=2", "+training.scaling.resources_per_worker={loom_replica: 1}"]

    # The second node cannot see the driver's workspace.
    [raylet] = [p for p in cluster.pids("node2")
                if b"raylet" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0]]
    look = ["test", "-e", str(project / "recipes" / "churn.yaml")]
    assert subprocess.run(look).returncode == 0
    assert subprocess.run(["nsenter", "-t", str(raylet), "-m", *look]).returncode == 1

    first = _loom(project, env, "launch", *v1, "rollout=direct")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    # Loom's own progress lines only: none of MLflow's run links or download bars.
    assert "View run" not in first.stdout and "Downloading artifacts" not in first.stdout + first.stderr
    actors = cluster.actors()
    trained = [a["on_head"] for a in actors if a["cls"] == "RayTrainWorker"]
    assert sorted(trained) == [False, True], trained  # one training worker on each node
    replicas = [a["on_head"] for a in actors
                if a["cls"] == "ServeReplica:churn:Predictor" and a["state"] == "ALIVE"]
    assert sorted(replicas) == [False, True], actors  # one replica on each node
    assert [a["on_head"] for a in actors if a["cls"] == "ServeReplica:loom-gateway:LoomGateway"
            and a["state"] == "ALIVE"] == [True]
    model_url = f"http://127.0.0.1:{port}/v1/models/churn/predictions"
    node2_url = f"http://127.0.0.1:{cluster.node2_http_port}/v1/models/churn/predictions"
    gateway_url = f"http://127.0.0.1:{port}/v1/predictions"
    assert _version(model_url) == "1" and _version(node2_url) == "1"  # each node's proxy answers
    # Nothing of MLflow or the Feast registry is in the workspace: every node reads them remotely.
    assert not (project / ".loom" / "mlflow").exists()
    assert not list((project / ".loom").rglob("registry.db"))
    import psycopg

    with psycopg.connect(f"postgresql://loom@{postgres_server}/feast") as db:
        services = [row[0] for row in db.execute("SELECT feature_service_name FROM feature_services")]
    assert services, "the feature service is in the PostgreSQL registry"

    # Version 2: the same model trained by one worker, pinned to node 2. Its canary starts on
    # both nodes, and is rolled back.
    v2 = [*base, "+training.scaling.resources_per_worker={node2: 1}", "rollout=canary",
          "rollout.steps=[50,100]", "rollout.interval_s=120"]
    second = _loom(project, env, "launch", *v2, "--detach")
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    trained = [a["on_head"] for a in cluster.actors() if a["cls"] == "RayTrainWorker"]
    assert sorted(trained) == [False, False, True], trained  # the third worker on node 2
    auc = [float(re.search(r"test: auc ([0-9.]+)", run.stdout).group(1)) for run in (first, second)]
    assert abs(auc[0] - auc[1]) <= 0.005, auc  # data-parallel across nodes: the same model quality
    seen = {_version(model_url, {"entities": {"customer_id": f"C{i:06d}"}}) for i in range(40)}
    assert seen == {"1", "2"}, seen  # 50% of requests reach the candidate
    assert [a["on_head"] for a in cluster.actors()
            if a["cls"] == "ControllerRunner" and a["state"] == "ALIVE"] == [True]
    back = _loom(project, env, "rollout", "rollback", *v2, "--reason", "multi-node test")
    assert back.returncode == 0, back.stdout + back.stderr
    status = rollout_status(project / ".loom", "churn")
    assert status["status"] == "rolled_back" and status["stable_version"] == "1", status
    assert {_version(model_url, {"entities": {"customer_id": f"C{i:06d}"}}) for i in range(20)} == {"1"}
    champion = _loom(project, env, "registry", "show", *v2)
    assert champion.returncode == 0 and json.loads(champion.stdout)["version"] == "1", champion.stderr

    # Node 2 dies under load (SIGKILL of its raylet, replica and every other process of it).
    gateway = [H.Load(gateway_url, KEY, every_s=0.0, body=lambda i: {
        "model_id": "churn", "entities": {"customer_id": f"C{i % 900:06d}"}}) for _ in range(3)]
    direct = H.Load(model_url, KEY, every_s=0.02)
    with contextlib.ExitStack() as clients:
        for load in [*gateway, direct]:
            clients.enter_context(load)
        time.sleep(3)
        victims = cluster.pids("node2")
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        time.sleep(8)
    sent = sum(len(load.records) for load in gateway)
    lost = [r[1:] for load in gateway for r in load.failed()]
    before = [r for load in gateway for r in load.records if r[0] < killed_at]
    assert victims and len(before) > 20 and sent > len(before) + 20, (len(before), sent)
    assert lost == [], lost  # the gateway sent each request on the dead replica to the head's
    late = direct.between(killed_at + 3, time.time())
    assert late and all(r[1] == 200 for r in late), [r[1:] for r in late if r[1] != 200]
    assert {_version(model_url) for _ in range(5)} == {"1"}

    # A node without Loom joins (the repository's framework/ is empty there): the next command
    # that connects to the cluster says so, naming the node, instead of replicas failing there.
    cluster.add_node("node3", {}, hide=[project, ROOT / "framework"])
    started = time.monotonic()
    refused = _loom(project, env, "launch", *base, "rollout=direct", "+serving.max_instances=999")
    took = time.monotonic() - started
    assert refused.returncode != 0, refused.stdout[-3000:]
    said = refused.stdout + refused.stderr
    assert "Loom is not installed on 1 node(s) of the Ray cluster" in said, said[-3000:]
    assert "No module named" in said and "install the same loom-ml" in said, said[-3000:]
    assert "Traceback" not in said
    assert {_version(model_url) for _ in range(3)} == {"1"}  # what served before still serves
    print(f"\ntest AUC: 2 workers on 2 nodes {auc[0]:.4f}, 1 worker {auc[1]:.4f} (3,000 test rows)")
    print(f"a node without Loom: `loom launch` refused in {took:.1f} s: {said.strip().splitlines()[-1]}")
    print(f"node 2 killed under load: gateway route {len(lost)} of {sent} failed; model route "
          f"{len(direct.failed())} of {len(direct.records)} failed (Serve's proxy does not retry "
          f"requests that were on the lost node's replica); {len(late)} answered from 3 s after")
