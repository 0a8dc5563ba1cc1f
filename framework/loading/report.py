"""Turns pydantic validation errors into Problems a person can act on: key path, value, rule, hint."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from framework.errors import Problem
from framework.spec import Recipe
from framework.spec.checks import did_you_mean
from framework.spec.xgboost_params import SET_ELSEWHERE, param_help

SECRET_MASK = "***"
#: Common spellings of value types, for "did you mean" hints.
TYPE_ALIASES = {"int": "int64", "integer": "int64", "long": "int64", "float": "float64",
                "double": "float64", "str": "string", "text": "string", "boolean": "bool"}


#: Keys other tools spell differently: their name → (Loom's name, the tool). A hint suggests
#: Loom's name when the model at that place has it (``schema`` → ``fields`` in a feature view).
KEY_ALIASES: dict[str, tuple[str, str]] = {
    "created_timestamp_column": ("created_timestamp_field", "Feast"),
    "timestamp_column": ("timestamp_field", "Feast"),
    "event_timestamp_column": ("timestamp_field", "Feast"),
    "timestamp_key": ("timestamp_field", "Feast"),
    "schema": ("fields", "Feast"),
    "features": ("fields", "Feast"),
    "ttl": ("ttl_s", "Feast"),
    "batch_source": ("source", "Feast"),
    "stream_source": ("source", "Feast"),
    "join_key": ("join_keys", "Feast"),
    "dtype": ("value_type", "Feast"),
    "feature_service": ("service", "Feast"),
    "feature_services": ("service", "Feast"),
    "feature_views": ("views", "Feast"),
    "online_store": ("online", "Feast"),
    "offline_store": ("offline", "Feast"),
    "file_format": ("type", "Feast"),
    "format": ("type", "Feast"),
    "num_replicas": ("replicas", "Ray Serve"),
    "autoscaling_config": ("autoscaling", "Ray Serve"),
    "max_concurrent_queries": ("max_ongoing_requests", "Ray Serve"),
    "scaling_config": ("scaling", "Ray Train"),
    "param_space": ("search_space", "Ray Tune"),
    "hyperparameters": ("params", "XGBoost"),
    "n_estimators": ("num_boost_round", "XGBoost's scikit-learn API"),
    "num_round": ("num_boost_round", "XGBoost"),
}


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
    keyed = 0  # dict levels whose keys come next in loc (data.sources.<name>)
    for part in loc:
        if isinstance(part, int):
            continue
        if keyed:
            keyed -= 1
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        keyed = _dict_levels(info.annotation)
        model = _unwrap(info.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _dict_levels(tp: Any) -> int:
    """How many dict levels wrap the model type of a field (``dict[str, DataSource]``: 1)."""
    levels = 0
    for _ in range(6):
        origin = typing.get_origin(tp)
        if origin is None:
            return levels
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        levels += origin is dict
        tp = args[-1] if origin is dict else args[0]
    return levels


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


def _keys_at(loc: tuple[Any, ...]) -> list[str] | None:
    """Key names allowed at ``loc``: a model's fields or a TypedDict's keys (``training.model.params``)."""
    model = _model_at(loc)
    if model is not None:
        return list(model.model_fields)
    parent = _model_at(loc[:-1]) if loc else None
    info = parent.model_fields.get(str(loc[-1])) if parent else None
    keys = getattr(_unwrap(info.annotation), "__annotations__", None) if info else None
    return list(keys) if isinstance(keys, dict) else None


def unknown_key_hint(key: str, loc: tuple[Any, ...]) -> str | None:
    """Hint for an unknown key at ``loc``: another tool's name for a Loom key, or the closest key."""
    keys = _keys_at(loc)
    if keys is None:
        return None
    alias = KEY_ALIASES.get(key)
    if alias and alias[0] in keys:
        return f"Did you mean '{alias[0]}'? ('{key}' is {alias[1]}'s name; Loom calls it '{alias[0]}'.)"
    if dotted(loc) == "training.model.params":
        if key in SET_ELSEWHERE:
            return f"Loom sets '{key}' from {SET_ELSEWHERE[key]}; set it there."
        return (did_you_mean(key, keys) + " A parameter Loom does not check goes under "
                f"training.model.extra_params.{key} (passed to XGBoost unchecked).")
    return did_you_mean(key, keys)


def _hint(err: dict[str, Any], loc: tuple[Any, ...]) -> str | None:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return unknown_key_hint(str(loc[-1]), loc[:-1])
    if "loom_hint" in ctx:
        return str(ctx["loom_hint"])
    if len(loc) > 3 and dotted(loc[:3]) == "training.model.params":
        return param_help(str(loc[3]))
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


#: The user:password part of a URL, masked wherever a value is shown back.
_URL_CREDENTIALS = re.compile(r"://[^/@\s]+@")


def problems_from(exc: ValidationError, origin: Callable[[str], str | None],
                  secret_paths: Callable[[str], bool]) -> list[Problem]:
    """One Problem per pydantic error; secret values are masked, never printed."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = _strip_union_tag(tuple(err["loc"]))
        ctx = err.get("ctx") or {}
        if "loom_at" in ctx:  # raised by a model about one of its keys (spec/xgboost_params.py)
            loc += tuple(str(ctx["loom_at"]).split("."))
        path = dotted(loc)
        has_value = err["type"] not in ("missing", "loom_located")
        value = err.get("input")
        if secret_paths(path):
            value = SECRET_MASK
        elif isinstance(value, (dict, list)):
            has_value = False
        elif isinstance(value, str):
            value = _URL_CREDENTIALS.sub("://***@", value)  # a URL refused for them: not shown
        problems.append(Problem(path=path, file=origin(path), value=value, has_value=has_value,
                                message=_message(err), hint=_hint(err, loc)))
    return problems
