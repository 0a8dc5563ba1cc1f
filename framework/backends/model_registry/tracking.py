"""Where MLflow lives for a recipe: tracking URI, artifact root, experiment, and run look-ups by tag."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.errors import BackendError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from framework.spec import Recipe

#: Tags Loom sets on MLflow runs and model versions.
TAG_FINGERPRINT = "loom.fingerprint"
TAG_ADDRESS = "loom.address"
TAG_GATES = "loom.gates_fingerprint"
TAG_MODEL_URI = "loom.model_uri"

#: What stands in for a redacted credential.
REDACTED = "***"
# ``scheme://user:password@`` (also ``scheme://token@``): everything up to the authority's last
# '@' is credentials, even an '@' the user forgot to percent-encode.
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#\s]*@")
# Query parameters whose name says they carry a secret (``?token=``, ``&X-Amz-Signature=``).
_SECRET_PARAM_RE = re.compile(
    r"(?i)([?&;][^=&#\s]*(?:token|passw|pwd|secret|key|sig|auth|credential|session)[^=&#\s]*=)"
    r"[^&#\s]*")


def redact_uri(text: str) -> str:
    """``text`` with the credentials of every URI in it replaced by ``***``.

    Works on a bare URI (``https://user:pass@host`` → ``https://***@host``) and on any text that
    holds URIs (an exception's message), so error messages and audit lines can pass through it
    whole. Query parameters named like a secret keep their name: ``?token=***``.
    """
    if "://" not in text and "=" not in text:
        return text  # the common case, without a regex
    text = _USERINFO_RE.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _SECRET_PARAM_RE.sub(lambda m: m.group(1) + REDACTED, text)


def tracking_uri(recipe: "Recipe", workspace: Path) -> str:
    """``registry.tracking_uri``, or the embedded SQLite store ``<workspace>/mlflow/mlflow.db``."""
    if recipe.registry.tracking_uri:
        return recipe.registry.tracking_uri
    return f"sqlite:///{mlflow_dir(workspace) / 'mlflow.db'}"


def mlflow_dir(workspace: Path) -> Path:
    """``<workspace>/mlflow``, absolute."""
    return Path(workspace).resolve() / "mlflow"


def experiment_name(recipe: "Recipe") -> str:
    """``registry.experiment`` or ``loom/<recipe name>``."""
    project = f"{recipe.env.project}/" if recipe.env.project else ""
    return recipe.registry.experiment or f"loom/{project}{recipe.name}"


def client_for(uri: str) -> "MlflowClient":
    """An MlflowClient for ``uri`` with telemetry off and MLflow's INFO chatter silenced.

    Raises:
        BackendError: the SQLite store needs ``alembic``, which mlflow-skinny does not install.
    """
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    # Loom prints its own lines: no "🏃 View run ... at" per run on a tracking server, and no
    # download progress bars (each artifact download).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if uri.startswith("sqlite:"):
        _check_sqlite_support(uri)
    import mlflow
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _check_sqlite_support(uri: str) -> None:
    if importlib.util.find_spec("alembic") is None:
        raise BackendError(
            f"registry.tracking_uri: the SQLite MLflow store ({redact_uri(uri)}) needs the "
            "'alembic' package, "
            "which mlflow-skinny does not install. Install it (pip install alembic) or set "
            "registry.tracking_uri to an MLflow server (http://host:5000)."
        )
    path = uri.split("sqlite:///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def recipe_client(recipe: "Recipe", workspace: Path) -> "MlflowClient":
    """The MlflowClient for a recipe's registry."""
    return client_for(tracking_uri(recipe, workspace))


def experiment_id(
    client: "MlflowClient", recipe: "Recipe", workspace: Path, create: bool = True
) -> str | None:
    """The recipe's experiment id, created (artifacts under ``<workspace>/mlflow/artifacts``) if asked."""
    name = experiment_name(recipe)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    if not create:
        return None
    location = None
    if not recipe.registry.tracking_uri:
        location = (mlflow_dir(workspace) / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def find_runs(client: "MlflowClient", exp_id: str | None, tags: dict[str, str]) -> list[Any]:
    """Active, finished runs of ``exp_id`` carrying every tag in ``tags``, newest first."""
    if exp_id is None:
        return []
    clauses = [f"tags.`{k}` = '{_quote(v)}'" for k, v in tags.items()]
    clauses.append("attributes.status = 'FINISHED'")
    return client.search_runs([exp_id], filter_string=" and ".join(clauses),
                              order_by=["attributes.start_time DESC"], max_results=100)


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
