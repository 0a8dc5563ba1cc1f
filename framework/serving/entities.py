"""Checking a request's entity keys before the online lookup: names, types, ranges and lengths.

A key the store cannot take is the client's error (422 naming the key), never a feature-store
failure: only a healthy-looking request may reach the lookup and count towards its breaker.
"""

from __future__ import annotations

from typing import Any

from framework.serving.problems import ApiError

#: Integer range of each join-key value type (Feast stores int32/int64 keys in those widths).
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_INT64 = INT_RANGES["int64"]


class EntityChecker:
    """The join keys of one model and the longest string key a request may send."""

    def __init__(self, entity_keys: dict[str, str], max_chars: int) -> None:
        self.types = dict(entity_keys)
        self.max_chars = max_chars
        self._names = set(entity_keys)
        self._all_strings = all(t == "string" for t in entity_keys.values())

    def check(self, entities: dict[str, Any], where: str = "") -> None:
        """``ApiError`` 422 naming the first bad key; ``where``: ``instances[3].`` in a batch."""
        if entities.keys() == self._names and self._all_strings and all(
                v.__class__ is str and len(v) <= self.max_chars for v in entities.values()):
            return  # the usual request: exactly the join keys, short strings
        unknown = sorted(set(entities) - self._names)
        if unknown:
            raise ApiError(422, f"{where}Unknown entity keys: {', '.join(k[:64] for k in unknown[:20])}; "
                                f"this model takes {', '.join(self.types) or 'none'}.",
                           [{"field": f"{where}entities.{k[:64]}", "message": "not a join key"}
                            for k in unknown[:20]])
        if entities and entities.keys() != self._names:
            missing = sorted(self._names - set(entities))
            raise ApiError(422, f"{where}Missing entity keys: {', '.join(missing)}.",
                           [{"field": f"{where}entities.{k}", "message": "required"} for k in missing])
        for key, value in entities.items():
            self._check_value(key, value, where)

    def _check_value(self, key: str, value: Any, where: str) -> None:
        field = [{"field": f"{where}entities.{key}", "message": "invalid entity key"}]
        kind = self.types[key]
        if kind == "string":
            text = value if isinstance(value, str) else str(value)
            if len(text) > self.max_chars:
                raise ApiError(422, f"{where}Entity key '{key}' is {len(text)} characters long; "
                                    f"at most {self.max_chars} are allowed "
                                    "(serving.max_entity_key_chars).", field)
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(422, f"{where}Entity key '{key}' must be an integer ({kind}); got "
                                f"{type(value).__name__}.", field)
        low, high = INT_RANGES.get(kind, _INT64)
        if not low <= value <= high:
            shown = str(value) if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
            raise ApiError(422, f"{where}Entity key '{key}': got {shown}. It must fit in "
                                f"{kind if kind in INT_RANGES else 'int64'} ({low}..{high}).", field)
