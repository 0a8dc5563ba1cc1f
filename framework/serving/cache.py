"""An exact-match LRU answer cache with a time to live, keyed by model version and request,
bounded in entries and in bytes."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

#: Bytes an entry costs besides its key strings and its answer's JSON: the OrderedDict slot, the
#: key tuple, the expiry float and the answer dict's own table (measured ≈ 600 with sys.getsizeof).
ENTRY_OVERHEAD = 640
#: Default byte bound (``serving.cache.max_bytes``).
MAX_BYTES = 33_554_432


def cache_key(version: str, entities: dict[str, Any], features: dict[str, Any]) -> Hashable:
    """The key of one instance: the answering version plus its entities and request features."""
    return (version, json.dumps(entities, sort_keys=True), json.dumps(features, sort_keys=True))


def entry_bytes(key: Hashable, value: Any) -> int:
    """What one entry holds, about: its key strings (ASCII JSON), its answer as JSON, overhead."""
    text = sum(len(part) for part in key if isinstance(part, str)) if isinstance(key, tuple) else 64
    try:
        answer = len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        answer = 1024
    return text + answer + ENTRY_OVERHEAD


class AnswerCache:
    """LRU with TTL. Entries carry their version, so dropping a version drops its answers."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 max_bytes: int = MAX_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any, int]] = OrderedDict()
        self.bytes = 0
        """What the entries hold now, in bytes (``entry_bytes``)."""

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any | None:
        """The cached answer, or None when absent or expired."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        expires, value, _ = hit
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store an answer, evicting the least recently used beyond ``max_entries`` or
        ``max_bytes``; an answer larger than ``max_bytes`` by itself is not kept."""
        size = entry_bytes(key, value)
        if key in self._entries:
            self._drop(key)
        if size > self.max_bytes:
            return
        self._entries[key] = (self._clock() + self.ttl_s, value, size)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped

    def _drop(self, key: Hashable) -> None:
        _, _, size = self._entries.pop(key)
        self.bytes -= size

    def keep_versions(self, versions: set[str]) -> None:
        """Drop every answer of a version not in ``versions`` (called when slots change)."""
        for key in [k for k in self._entries if k[0] not in versions]:  # type: ignore[index]
            self._drop(key)
