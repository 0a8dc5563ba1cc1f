"""Calling a deployed model as a client would: ``loom predict``, and the ``curl`` that ``loom launch`` prints."""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from framework.errors import BackendError


def endpoint_url(recipe: Any, host: str | None = None, port: int | None = None) -> str:
    """The model's prediction URL (the recipe's HTTP host and port unless given)."""
    http = recipe.serving.http
    prefix = recipe.serving.route_prefix.rstrip("/")
    return (f"http://{host or http.host}:{port or http.port}{prefix}"
            f"/v1/models/{recipe.model_id}/predictions")


def key_env(recipe: Any) -> str | None:
    """The environment variable holding the recipe's first API key, if it comes from one."""
    for entry in recipe.serving.auth.api_keys:
        if entry.key.env:
            return entry.key.env
    return None


def example_entities(recipe: Any, project_dir: Path | None = None) -> dict[str, Any]:
    """An entity for examples: the first one in the features' source data, else ``{"customer_id": "42"}``."""
    from framework.backends.ray_serve.config import entity_keys

    keys = entity_keys(recipe)
    found = _first_entity(recipe, project_dir, list(keys)) if project_dir else None
    return found or {k: ("42" if t == "string" else 42) for k, t in keys.items()}


def _first_entity(recipe: Any, project_dir: Path, keys: list[str]) -> dict[str, Any] | None:
    view = recipe.features.views[recipe.feature_refs()[0][0]]
    path = Path(recipe.data.sources[view.source].path).expanduser()
    path = path if path.is_absolute() else Path(project_dir) / path
    try:
        import pyarrow.parquet as pq

        first = pq.ParquetFile(path).read_row_group(0, columns=keys).slice(0, 1).to_pylist()
    except Exception:  # not parquet, unreadable, or missing: a placeholder will do
        return None
    return first[0] if first else None


def curl_command(recipe: Any, url: str | None = None, project_dir: Path | None = None) -> str:
    """A ready-to-paste ``curl`` for the endpoint; the key stays in its environment variable."""
    body = json.dumps({"entities": example_entities(recipe, project_dir)})
    parts = ["curl -s", shlex.quote(url or endpoint_url(recipe)),
             "-H 'Content-Type: application/json'"]
    if recipe.serving.auth.enabled:
        env = key_env(recipe) or "LOOM_API_KEY"
        parts.append(f'-H "Authorization: Bearer ${env}"')
    parts.append(f"-d {shlex.quote(body)}")
    return " ".join(parts)


def split_pairs(recipe: Any, pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``customer_id=42 tenure_months=24`` into entities (join keys) and features (numbers).

    Raises:
        BackendError: a pair is not ``name=value``, names neither a join key nor a feature, or a
            feature value is not a number.
    """
    from framework.backends.ray_serve.config import entity_keys

    keys, names = entity_keys(recipe), set(recipe.feature_names())
    entities: dict[str, Any] = {}
    features: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise BackendError(f"Got {pair!r}. Give entity keys and features as name=value.")
        if name in keys:
            entities[name] = value if keys[name] == "string" else _int(name, value)
        elif name in names:
            features[name] = _number(name, value)
        else:
            raise BackendError(f"Got {name!r}. Not an entity key ({', '.join(keys)}) or a feature of "
                               f"model '{recipe.model_id}' ({', '.join(sorted(names))}).")
    return entities, features


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise BackendError(f"{name}: got {value!r}. This entity key is an integer.") from exc


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise BackendError(f"{name}: got {value!r}. Features are numbers.") from exc


def predict(url: str, key: str | None, entities: dict[str, Any], features: dict[str, Any],
            timeout_s: float = 10.0) -> dict[str, Any]:
    """POST one prediction request and return the JSON answer.

    Raises:
        BackendError: nothing listens at ``url``, or the API answered an error (its message shown).
    """
    body = json.dumps({"entities": entities, "features": features}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise BackendError(f"{url} answered {err.code}: {_error_message(err.read())}") from err
    except (urllib.error.URLError, OSError) as exc:
        raise BackendError(f"Nothing answers at {url} ({exc}). Start it with "
                           "`loom launch recipe=NAME`, or check serving.http.") from exc


def _error_message(raw: bytes) -> str:
    try:
        return json.loads(raw)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace")[:200]


def write_serve_config(config: dict[str, Any], path: Path) -> Path:
    """Write a ``serve deploy`` config as YAML after validating it against Ray's schema."""
    import yaml

    from framework.backends.ray_serve.config import validate_config

    validate_config(config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
