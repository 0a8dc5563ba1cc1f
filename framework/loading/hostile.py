"""Rejects hostile or unsafe recipe content before anything runs: ``_target_``, resolvers, env misuse.

YAML python tags never load (Hydra's YAML loader is a safe loader; ``compose.py`` reports the file and
line). Here we look at the composed but *unresolved* config: ``${oc.env:VAR}`` is allowed only where the
recipe language marks a field as a secret or as environment-driven; other resolvers are refused, and
so are resolver names or reference keys built by interpolation (``${${a.k}:X}``). A reference may not
copy a secret or an environment-driven value into another field: that copy would be shown in plans,
``--show`` and lineage, which carry such fields only as their ``${oc.env:...}`` text.
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
from framework.loading import interpolation
from framework.spec import Recipe
from framework.spec.base import SecretRef

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
    refs: dict[str, list[list[str]]] = {}
    for path, value in walk(raw):
        if path.rsplit(".", 1)[-1] == "_target_":
            problems.append(Problem(path=path, file=origin(path), value=value, has_value=True,
                                    message="'_target_' is not allowed: recipes are data, never code to instantiate.",
                                    hint="Pick an implementation with a 'type:' field instead."))
        if not isinstance(value, str) or "${" not in value:
            continue
        role = field_role(path)
        found = [Problem(path=path, file=origin(path), value=value, has_value=True, message=m, hint=h)
                 for m, h in _interpolation_rules(raw, path, value, role, refs)]
        problems += found
        match = OC_ENV_RE.match(value.strip())
        if role == "secret" and not found:
            if match and match.group(2) is None:
                secrets[path] = match.group(1)
            elif match:
                problems.append(Problem(path=path, file=origin(path), value="${oc.env:%s,...}" % match.group(1),
                                        has_value=True, message="A secret may not have a default value in YAML.",
                                        hint=f"Write ${{oc.env:{match.group(1)}}} and set the variable."))
    problems += _expansion_problems(raw, refs, origin) if refs and not problems else []
    return problems, secrets


def _expansion_problems(raw: dict[str, Any], refs: dict[str, list[list[str]]],
                        origin: typing.Callable[[str], str | None]) -> list[Problem]:
    """A Problem when references multiply a value past ``MAX_EXPANDED`` (a "billion laughs" of ``${...}``)."""
    try:
        path = interpolation.oversized(raw, refs)
    except (interpolation.Unreadable, RecursionError) as exc:
        where = getattr(exc, "path", None) or next(iter(refs))
        return [Problem(path=where, file=origin(where), message=f"{exc}; that is the limit.",
                        hint="Refer to the value itself, not to a chain of references.")]
    if path is None:
        return []
    return [Problem(path=path, file=origin(path), message="Once its references are resolved this value "
                    f"holds more than {interpolation.MAX_EXPANDED:,} characters; that is the limit.",
                    hint="Each ${...} copies what it refers to: write the value out or refer to fewer copies.")]


PLAIN = "Only ${oc.env:VAR} (in secret or environment-driven fields) and plain references like " \
        "${training.label.column} work."


def _interpolation_rules(raw: dict[str, Any], path: str, value: str, role: str | None,
                         refs: dict[str, list[list[str]]]) -> Iterator[tuple[str, str]]:
    """(message, hint) for every rule the ``${...}`` in ``value`` (at ``path``) breaks; its references
    are added to ``refs``."""
    if "\\${" in value:
        yield ("An escaped \\${...} is not allowed: a saved plan would read it back as an interpolation.",
               "Write the text without '${'.")
    try:
        resolvers, references = interpolation.read(value)
    except interpolation.Unreadable as exc:
        yield f"Cannot read this interpolation: {exc}.", PLAIN
        return
    for r in resolvers:
        if r.built:
            yield (f"A resolver name cannot be built by interpolation ('{r.name}').",
                   "Write the resolver out: " + PLAIN)
        elif r.name != "oc.env":
            yield f"Resolver '{r.name}' is not allowed in recipes.", PLAIN
        elif role is None:
            yield ("${oc.env:...} is allowed only in secret or environment-driven fields.",
                   "Write the value itself here; environment variables may set only "
                   "fields such as env.ray_address, registry.tracking_uri and secrets.")
        elif r.args_built:
            yield ("The variable name in ${oc.env:...} cannot be built by interpolation.",
                   "Write the name out: ${oc.env:MY_VAR}.")
    for ref in references:
        if not ref.built:
            refs.setdefault(path, []).append(interpolation.target_parts(path, ref.key))
        yield from _reference_rules(raw, path, ref)


def _reference_rules(raw: dict[str, Any], path: str, ref: interpolation.Reference) -> Iterator[tuple[str, str]]:
    if ref.built:
        yield (f"A reference's key cannot be built by interpolation ('${{{ref.key}}}').",
               "Write the key out, e.g. ${training.label.column}.")
        return
    sensitive = _sensitive_field(raw, interpolation.target_parts(path, ref.key))
    if sensitive:
        where, kind = sensitive
        what = "a secret" if kind == "secret" else "an environment-driven field"
        yield (f"'${{{ref.key}}}' copies {where} ({what}) into {path}; a copy would be shown in "
               "plans, --show and lineage, so interpolation may not copy secrets or environment-driven values.",
               f"Write the value of {path} itself, or set {where} where it is.")


def _sensitive_field(raw: dict[str, Any], parts: list[str]) -> tuple[str, str] | None:
    """(path, role) of a secret or env-driven field at, above or under the referenced key, if any."""
    target, node, found = interpolation.locate(raw, parts)
    for i in range(1, len(parts) + 1):
        above = interpolation.locate(raw, parts[:i])[0]
        if field_role(above):
            return above, field_role(above) or ""
    for sub, _ in walk(node, target) if found else ():
        role = field_role(sub)
        if role:
            return sub, role
    return None


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
