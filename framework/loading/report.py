"""Turns pydantic validation errors into Problems a person can act on: key path, value, rule, hint."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from framework.errors import Problem
from framework.spec import Recipe
from framework.spec.checks import did_you_mean

SECRET_MASK = "***"
#: Common spellings of value types, for "did you mean" hints.
TYPE_ALIASES = {"int": "int64", "integer": "int64", "long": "int64", "float": "float64",
                "double": "float64", "str": "string", "text": "string", "boolean": "bool"}


def dotted(loc: tuple[Any, ...]) -> str:
    """('rollout', 'steps', 2) → 'rollout.steps[2]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model that holds the field at ``loc`` (follows dicts, lists and union tags)."""
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        model = _unwrap(info.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """The model type inside Optional/list/dict/Annotated; the first model of a union."""
    for _ in range(6):
        origin = typing.get_origin(tp)
        if origin is None:
            return tp
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if origin is dict:
            tp = args[1]
        elif origin is typing.Annotated:
            tp = args[0]
        else:
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
    return tp


UNION_TAGS = {"direct", "blue_green", "canary", "xgboost", "random", "time", "sqlite", "redis",
              "duckdb", "file", "choice", "uniform", "loguniform", "randint", "previous_version",
              "model", "rules", "default"}


def _strip_union_tag(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pydantic puts the union member ('canary', 'xgboost', 'function-after[...]') into loc; drop it."""
    out: list[Any] = []
    for part in loc:
        if isinstance(part, str) and part.startswith(("function-", "json-or-python")):
            continue
        if isinstance(part, str) and part in UNION_TAGS and out:
            parent = _model_at(tuple(out))
            if parent is None or part not in parent.model_fields:
                continue
        out.append(part)
    return tuple(out)


def _hint(err: dict[str, Any], loc: tuple[Any, ...]) -> str | None:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        return did_you_mean(str(loc[-1]), model.model_fields) if model else None
    if kind == "literal_error":
        options = [o.strip(" '") for o in str(ctx.get("expected", "")).replace(" or ", ",").split(",")]
        given = str(err.get("input"))
        if TYPE_ALIASES.get(given.lower()) in options:
            return f"Valid: {', '.join(sorted(options))}. Did you mean '{TYPE_ALIASES[given.lower()]}'?"
        return did_you_mean(given, [o for o in options if o])
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        options = [o.strip(" '") for o in str(ctx.get("expected_tags", "")).split(",")]
        tag = ctx.get("discriminator", "type").strip("'")
        return f"Set '{tag}' to one of the options. " + did_you_mean(str(ctx.get("tag", "")), options)
    if kind == "missing":
        return f"Add '{loc[-1]}' (see `loom schema` for what it means)."
    return None


def _message(err: dict[str, Any]) -> str:
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        return "Unknown key."
    if err["type"] == "missing":
        return "Required key is missing."
    return msg[0].upper() + msg[1:] + ("" if msg.endswith(".") else ".")


def problems_from(exc: ValidationError, origin: Callable[[str], str | None],
                  secret_paths: Callable[[str], bool]) -> list[Problem]:
    """One Problem per pydantic error; secret values are masked, never printed."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = _strip_union_tag(tuple(err["loc"]))
        path = dotted(loc)
        has_value = err["type"] not in ("missing",)
        value = err.get("input")
        if secret_paths(path):
            value = SECRET_MASK
        elif isinstance(value, (dict, list)):
            has_value = False
        problems.append(Problem(path=path, file=origin(path), value=value, has_value=has_value,
                                message=_message(err), hint=_hint(err, loc)))
    return problems
