"""One event off the bus, checked: its id, time, entity keys and feature values, or the reason not.

A Redis Streams entry is a flat map of field -> string. An event carries its id
(``streaming.event.id_field``), optionally its time (``streaming.event.time_field``), the model's
join keys, and optionally feature values that override the stored ones (as ``features`` in an API
request). Values are typed by the recipe: numbers are parsed, categories stay strings. Anything
else is a ``BadEvent`` whose message names the field and says what it must be; the consumer
sends such an event to the dead-letter stream and goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from framework.serving.schemas import Instance

#: Longest value of any field (a category, a key, a number's text).
MAX_VALUE_CHARS = 1024
_INTS = {"int32", "int64"}
_FLOATS = {"float32", "float64"}


class BadEvent(ValueError):
    """An event that cannot be scored; the message says which field and why."""


@dataclass(frozen=True)
class Event:
    """A checked event: what the predictor needs, and what the result carries back."""

    entry_id: str
    event_id: str
    time_ms: float
    instance: Instance
    values: dict[str, Any]  # every typed value it carries: the model's features and push-only fields


class EventParser:
    """Checks events for one model (its join keys, features and their types)."""

    def __init__(self, entity_keys: dict[str, str], feature_types: dict[str, str], id_field: str,
                 time_field: str, max_id_chars: int, push_types: dict[str, str] | None = None) -> None:
        """``push_types``: fields of ``push: true`` views that are not model features (an event
        may carry them to update the store; the model does not read them)."""
        self.keys = dict(entity_keys)
        self.types = dict(feature_types)
        self.all_types = {**(push_types or {}), **self.types}
        self.id_field, self.time_field, self.max_id_chars = id_field, time_field, max_id_chars
        self._known = {id_field, time_field, *self.keys, *self.all_types}

    def describe(self) -> str:
        """The fields an event may carry, for error messages."""
        return (f"{self.id_field} (required), {self.time_field}, join keys "
                f"{', '.join(self.keys) or 'none'} and features {', '.join(self.all_types)}")

    def parse(self, entry_id: str, raw: dict[Any, Any]) -> Event:
        """The event of one stream entry.

        Raises:
            BadEvent: a missing or too long id, an unknown field, a bad time or value.
        """
        fields = {_text(k): _text(v) for k, v in raw.items()}
        unknown = sorted(k for k in fields if k not in self._known)
        if unknown:
            raise BadEvent(f"unknown field(s) {', '.join(k[:64] for k in unknown[:10])}; an event "
                           f"carries {self.describe()}")
        event_id = fields.get(self.id_field, "")
        if not event_id:
            raise BadEvent(f"no '{self.id_field}' (streaming.event.id_field): every event needs an id")
        if len(event_id) > self.max_id_chars:
            raise BadEvent(f"'{self.id_field}' is {len(event_id)} characters long; at most "
                           f"{self.max_id_chars} (streaming.event.max_id_chars)")
        long = [k for k, v in fields.items() if len(v) > MAX_VALUE_CHARS]
        if long:
            raise BadEvent(f"field '{long[0][:64]}' is longer than {MAX_VALUE_CHARS} characters")
        time_ms = self._time(fields.get(self.time_field), entry_id)
        entities = {k: self._key(k, fields[k]) for k in self.keys if k in fields}
        values = {k: self._value(k, v) for k, v in fields.items() if k in self.all_types}
        features = {k: v for k, v in values.items() if k in self.types}
        if not entities and not features:
            raise BadEvent(f"no join keys ({', '.join(self.keys)}) and no feature values: nothing "
                           "to score")
        return Event(entry_id, event_id, time_ms, Instance.model_construct(
            entities=entities, features=features), values)

    def _time(self, text: str | None, entry_id: str) -> float:
        if not text:  # the moment the bus took it: the entry id's milliseconds
            return float(entry_id.split("-", 1)[0])
        try:
            return float(text) if _is_number(text) else _iso_ms(text)
        except ValueError:
            raise BadEvent(f"'{self.time_field}' is {text[:64]!r}: give an ISO 8601 time "
                           "(2026-12-01T10:00:00Z) or epoch milliseconds") from None

    def _key(self, name: str, text: str) -> Any:
        if self.keys[name] not in _INTS:
            return text
        try:
            return int(text)
        except ValueError:
            raise BadEvent(f"join key '{name}' is {text[:64]!r}; it must be an integer "
                           f"({self.keys[name]})") from None

    def _value(self, name: str, text: str) -> Any:
        kind = self.all_types[name]
        if text == "":
            return None  # sent empty: the stored value stands
        if kind in _INTS or kind in _FLOATS:
            try:
                value = int(text) if kind in _INTS else float(text)
            except ValueError:
                raise BadEvent(f"feature '{name}' is {text[:64]!r}; it must be a number "
                               f"({kind})") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise BadEvent(f"feature '{name}' is {text[:64]!r}; it must be a finite number")
            return value
        if kind == "bool":
            lowered = text.lower()
            if lowered not in {"true", "false", "1", "0"}:
                raise BadEvent(f"feature '{name}' is {text[:64]!r}; it must be true or false")
            return lowered in {"true", "1"}
        return text  # a category


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadEvent("a field or value is not UTF-8 text") from None
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _iso_ms(text: str) -> float:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp() * 1000
