"""An exact-match LRU answer cache with a time to live, keyed by model version and request."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable


def cache_key(version: str, entities: dict[str, Any], features: dict[str, Any]) -> Hashable:
    """The key of one instance: the answering version plus its entities and request features."""
    return (version, json.dumps(entities, sort_keys=True), json.dumps(features, sort_keys=True))


class AnswerCache:
    """LRU with TTL. Entries carry their version, so dropping a version drops its answers."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any | None:
        """The cached answer, or None when absent or expired."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        expires, value = hit
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store an answer, evicting the least recently used beyond ``max_entries``."""
        self._entries[key] = (self._clock() + self.ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def keep_versions(self, versions: set[str]) -> None:
        """Drop every answer of a version not in ``versions`` (called when slots change)."""
        for key in [k for k in self._entries if k[0] not in versions]:  # type: ignore[index]
            del self._entries[key]
