"""An Alertmanager config for one model: its alerts routed to the recipe's webhook.

Secrets never sit in ``alertmanager.yml``: Alertmanager reads them from files at run time
(``url_file``, ``http_config.authorization.credentials_file``). A secret given as a file is
referenced where it is; one given as an environment variable is written, mode 0600, to
``<workspace>/monitoring/<model>/secrets/`` because Alertmanager cannot read Loom's environment.
That file is the one place Loom writes a secret's value, and only because it is the point.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from framework.backends.alert_rules import duration
from framework.errors import BackendError

#: Labels that make one notification: one per alert, model, version and feature.
GROUP_BY = ["alertname", "model", "version", "feature"]


def receiver_name(model_id: str) -> str:
    return f"loom-{model_id}"


def secret_paths(recipe: Any, out: Path, project_dir: Path) -> dict[str, tuple[Path, Any]]:
    """``{key: (the file Alertmanager reads, the SecretRef)}`` for the webhook's secrets."""
    hook = recipe.monitoring.alertmanager.webhook
    found = {}
    for key, ref in (("url_secret", hook.url_secret), ("bearer_token", hook.bearer_token)):
        if ref is None:
            continue
        path = (out / "secrets" / key if ref.env is not None
                else (project_dir / Path(ref.file).expanduser()).resolve())
        found[key] = (path, ref)
    return found


def alertmanager_config(recipe: Any, secrets: dict[str, tuple[Path, Any]]) -> dict[str, Any]:
    """The Alertmanager config (``amtool check-config`` accepts it) routing this model's alerts.

    Args:
        recipe: The validated recipe, with ``monitoring.alertmanager`` set.
        secrets: ``secret_paths``'s answer: where each secret's file is.

    Returns:
        One route (matching ``model="<model>"``) and one receiver, ``loom-<model>``, whose webhook
        reads its secrets from files. Merge the route and receiver into a shared Alertmanager's
        config to serve several models.
    """
    am, model_id = recipe.monitoring.alertmanager, recipe.model_id
    hook = am.webhook
    webhook: dict[str, Any] = {"send_resolved": hook.send_resolved}
    if hook.url is not None:
        webhook["url"] = hook.url
    else:
        webhook["url_file"] = str(secrets["url_secret"][0])
    if "bearer_token" in secrets:
        webhook["http_config"] = {"authorization": {"type": "Bearer",
                                                    "credentials_file": str(secrets["bearer_token"][0])}}
    name = receiver_name(model_id)
    timing = {"group_wait": duration(am.group_wait_s), "group_interval": duration(am.group_interval_s),
              "repeat_interval": duration(am.repeat_interval_s)}
    return {
        "route": {"receiver": name, "group_by": GROUP_BY, **timing,
                  "routes": [{"receiver": name, "matchers": [f'model="{model_id}"'], **timing}]},
        "receivers": [{"name": name, "webhook_configs": [webhook]}],
    }


def write_env_secrets(secrets: dict[str, tuple[Path, Any]]) -> None:
    """Write each environment-variable secret to its 0600 file, replacing the file atomically."""
    for key, (path, ref) in secrets.items():
        if ref.env is None:
            continue
        value = os.environ.get(ref.env)
        if not value:
            raise BackendError(f"monitoring.alertmanager.webhook.{key}: environment variable {ref.env} "
                               "is not set; the Alertmanager webhook needs it. Export it and apply again.")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value)
        os.replace(tmp, path)


def env_secrets_current(secrets: dict[str, tuple[Path, Any]]) -> bool:
    """Whether every environment-variable secret's file holds the variable's value now.

    A rotated secret then re-renders (the step is not skipped); an unset variable counts as
    current, so a plan made without it does not propose a write that would fail.
    """
    for path, ref in secrets.values():
        if ref.env is None or not os.environ.get(ref.env):
            continue
        try:
            held = path.read_bytes()
        except OSError:
            return False
        if hashlib.sha256(held).digest() != hashlib.sha256(os.environ[ref.env].encode()).digest():
            return False
    return True
