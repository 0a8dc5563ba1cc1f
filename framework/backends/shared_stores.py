"""On a multi-node Ray cluster, nothing node-local may cross the wire: the stores' checks at plan.

Replicas and training workers run on other machines than the driver there, so every store they
read must be one every node reaches. A recipe whose ``env.ray_address`` names a cluster on
another machine but keeps a store on this one fails ``loom plan`` with one problem per key. A
loopback address (``127.0.0.1:6379``) is a cluster on this machine, where every node shares the
driver's disk: the embedded stores work there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from framework.errors import Problem

if TYPE_CHECKING:
    from framework.spec import Recipe

TRAIN_KINDS = frozenset({"training.train", "training.tune"})
#: Steps whose replicas read the online store, the Feast registry and the model's artifacts.
SERVE_KINDS = frozenset({"serving.deploy", "rollout.step"})
#: Steps that open the MLflow store (trained runs, registered versions, replicas' downloads).
MLFLOW_KINDS = TRAIN_KINDS | SERVE_KINDS | {"registry.register", "training.gates"}
#: The keys these checks name, in the order they are checked.
KEYS = ("features.store.online.type", "features.store.registry", "registry.tracking_uri",
        "env.storage_path")


def is_remote_cluster(address: str) -> bool:
    """True when ``env.ray_address`` names a cluster that may span other machines."""
    if not address:
        return False
    host = urlsplit(address if "://" in address else f"ray://{address}").hostname or ""
    if host == "localhost":
        return False
    import ipaddress

    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name (or "auto"): other machines, as far as Loom can tell
        return True


def node_local_problems(recipe: "Recipe", kinds: set[str]) -> list[Problem]:
    """One Problem per store of ``recipe`` that only this machine reaches, when it runs on a
    cluster of several machines and the plan's steps (``kinds``) use that store."""
    if not is_remote_cluster(recipe.env.ray_address):
        return []
    where = f"env.ray_address {recipe.env.ray_address!r} is a cluster of other machines"
    problems = []
    store = recipe.features.store
    serves_features = bool(kinds & SERVE_KINDS)  # replicas look features up in Feast
    if serves_features and store.online.type == "sqlite":
        problems.append(Problem(
            path="features.store.online.type", value="sqlite", has_value=True,
            message=f"The online store is a SQLite file on this machine, and {where}: replicas "
                    "on the other nodes cannot read it.",
            hint="Use a Redis every node reaches: store=redis with LOOM_REDIS=host:port "
                 "(features.store.online: {type: redis, connection_string: ...})."))
    if serves_features and not store.registry:
        problems.append(Problem(
            path="features.store.registry", value="", has_value=True,
            message=f"The Feast registry is a file in the workspace on this machine, and {where}: "
                    "replicas on the other nodes resolve the feature service from it.",
            hint="Set features.store.registry to a SQL registry every node reaches, e.g. "
                 "postgresql+psycopg://loom@db-host:5432/feast (password from PGPASSWORD)."))
    uri = recipe.registry.tracking_uri or ""
    if kinds & MLFLOW_KINDS and not uri.startswith(("http://", "https://", "databricks")):
        problems.append(Problem(
            path="registry.tracking_uri", value=uri or None, has_value=True,
            message=f"The MLflow store is {'the workspace SQLite file' if not uri else repr(uri)} on "
                    f"this machine, and {where}: replicas download the model from the registry's "
                    "artifact store, and training workers on other nodes log to it.",
            hint="Run an MLflow server every node reaches (`mlflow server --backend-store-uri "
                 "postgresql://... --serve-artifacts`) and set registry.tracking_uri: "
                 "http://host:5000."))
    if kinds & TRAIN_KINDS and not recipe.env.storage_path:
        problems.append(Problem(
            path="env.storage_path", value="", has_value=True,
            message=f"Ray Train keeps a run's checkpoints under the workspace on this machine, and "
                    f"{where}: workers on the other nodes write there too.",
            hint="Set env.storage_path to s3://bucket/prefix or a path every node mounts."))
    return problems
