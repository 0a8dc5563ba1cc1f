"""Rejects hostile or unsafe recipe content before anything runs: ``_target_``, resolvers, env misuse.

YAML python tags never load (Hydra's YAML loader is a safe loader; ``compose.py`` reports the file and
line). Here we look at the composed but *unresolved* config: ``${oc.env:VAR}`` is allowed only where the
recipe language marks a field as a secret or as environment-driven; other resolvers are refused.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from framework.errors import Problem
from framework.spec import Recipe
from framework.spec.base import SecretRef

RESOLVER_RE = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")
OC_ENV_RE = re.compile(r"^\$\{\s*oc\.env\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:,\s*([^}]*))?\}$")


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, value) in a plain nested dict/list, containers included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def set_path(data: Any, path: str, value: Any) -> None:
    """Set ``a.b[0].c`` in a plain nested dict/list."""
    parts = [int(p) if p.isdigit() else p for p in re.split(r"\.|\[|\]", path) if p]
    for part in parts[:-1]:
        data = data[part]
    data[parts[-1]] = value


def _field_patterns(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str]]:
    """(path pattern, 'secret' | 'env') for every secret or env-driven field; '*' is any key or index."""
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("loom_env"):
            yield path, "env"
        yield from _type_patterns(info.annotation, path)


def _type_patterns(tp: Any, path: str) -> Iterator[tuple[str, str]]:
    origin = typing.get_origin(tp)
    if tp is SecretRef:
        yield path, "secret"
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        yield from _field_patterns(tp, path)
    elif origin is typing.Annotated:
        yield from _type_patterns(typing.get_args(tp)[0], path)
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            yield from _type_patterns(arg, path)
    elif origin in (list, tuple):
        yield from _type_patterns(typing.get_args(tp)[0], f"{path}[*]")
    elif origin is dict:
        yield from _type_patterns(typing.get_args(tp)[1], f"{path}.*")


@functools.cache
def patterns() -> dict[str, str]:
    """Path pattern → 'secret' | 'env' for every such field of the recipe language (computed once)."""
    return dict(_field_patterns(Recipe, ""))


def field_role(path: str) -> str | None:
    """'secret' or 'env' when the field at ``path`` accepts ``${oc.env:...}``, else None."""
    generic = re.sub(r"\[\d+\]", "[*]", path)
    for pattern, role in patterns().items():
        regex = re.escape(pattern).replace(r"\[\*\]", r"\[\d+\]").replace(r"\*", r"[^.\[]+")
        if re.fullmatch(regex, path) or pattern == generic:
            return role
    return None


def scan(raw: dict[str, Any], origin: typing.Callable[[str], str | None]) -> tuple[list[Problem], dict[str, str]]:
    """Problems in the unresolved config, and the secret fields' env var names by path."""
    problems: list[Problem] = []
    secrets: dict[str, str] = {}
    for path, value in walk(raw):
        if path.rsplit(".", 1)[-1] == "_target_":
            problems.append(Problem(path=path, file=origin(path), value=value, has_value=True,
                                    message="'_target_' is not allowed: recipes are data, never code to instantiate.",
                                    hint="Pick an implementation with a 'type:' field instead."))
        if not isinstance(value, str) or "${" not in value:
            continue
        role = field_role(path)
        for resolver in RESOLVER_RE.findall(value):
            if resolver != "oc.env":
                problems.append(Problem(path=path, file=origin(path), value=value, has_value=True,
                                        message=f"Resolver '{resolver}' is not allowed in recipes.",
                                        hint="Only ${oc.env:VAR} (in secret or environment-driven fields) "
                                             "and plain references like ${training.label.column} work."))
            elif role is None:
                problems.append(Problem(path=path, file=origin(path), value=value, has_value=True,
                                        message="${oc.env:...} is allowed only in secret or environment-driven fields.",
                                        hint="Write the value itself here; environment variables may set only "
                                             "fields such as env.ray_address, registry.tracking_uri and secrets."))
        match = OC_ENV_RE.match(value.strip())
        if role == "secret":
            if match and match.group(2) is None:
                secrets[path] = match.group(1)
            elif match:
                problems.append(Problem(path=path, file=origin(path), value="${oc.env:%s,...}" % match.group(1),
                                        has_value=True, message="A secret may not have a default value in YAML.",
                                        hint=f"Write ${{oc.env:{match.group(1)}}} and set the variable."))
    return problems, secrets


def redacted(data: Any) -> Any:
    """A copy of a composed recipe for display: secret references as ``${oc.env:VAR}`` or
    ``<secret file ...>`` (no secret value is ever in the data; this keeps it readable)."""
    import copy

    out = copy.deepcopy(data)
    for path, value in list(walk(out)):
        if isinstance(value, dict) and field_role(path) == "secret":
            ref = "${oc.env:%s}" % value["env"] if value.get("env") else f"<secret file {value.get('file')}>"
            set_path(out, path, ref)
    return out
