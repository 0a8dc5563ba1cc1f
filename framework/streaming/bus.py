"""Redis Streams as the event bus: a consumer group on the source, an idempotent sink, dead letters.

Delivery is at least once, and the sink is idempotent: a batch's results are written by one Lua
script that, atomically, remembers each event id (``SET NX EX``), appends a result only if its id
was new, and acknowledges the batch's source entries. An event redelivered after a crash (its consumer died
between reading and acknowledging it; another consumer claims it with ``XAUTOCLAIM``) therefore
writes no second result. A dead letter is appended and acknowledged in one step the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: One call per batch. KEYS: sink, source, then the seen key of each result.
#: ARGV: group, ttl, maxlen, n, then per result: entry id, field count, field, value, ...
#: Returns one 1 (written) or 0 (its event id was answered before) per result.
_SINK = """
local group, ttl, maxlen, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local pos, out, entries = 5, {}, {}
for i = 1, n do
  local entry, nf = ARGV[pos], tonumber(ARGV[pos + 1])
  pos = pos + 2
  if redis.call('SET', KEYS[2 + i], '1', 'NX', 'EX', ttl) then
    local args = {KEYS[1], 'MAXLEN', '~', maxlen, '*'}
    for j = 0, 2 * nf - 1 do args[#args + 1] = ARGV[pos + j] end
    redis.call('XADD', unpack(args))
    out[i] = 1
  else
    out[i] = 0
  end
  pos = pos + 2 * nf
  entries[i] = entry
end
if n > 0 then redis.call('XACK', KEYS[2], group, unpack(entries)) end
return out
"""

#: KEYS: dead-letter stream, source. ARGV: group, entry id, maxlen, field, value, ...
_DEAD = """
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Streams:
    """The keys one model's consumers use."""

    source: str
    group: str
    sink: str
    dead_letter: str
    seen: str  # prefix of the keys that remember answered event ids

    @classmethod
    def of(cls, names: dict[str, str]) -> "Streams":
        """From ``Streaming.names(model)``."""
        return cls(**names)


def connect(url: str, password: str | None = None) -> Any:
    """An asyncio Redis client (bytes in and out) for ``url``."""
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, password=password, decode_responses=False,
                                   socket_timeout=30, socket_connect_timeout=5)


def connect_sync(url: str, password: str | None = None) -> Any:
    """A blocking Redis client for ``url`` (the CLI's status and the tests' producers)."""
    import redis

    return redis.Redis.from_url(url, password=password, decode_responses=False,
                                socket_timeout=10, socket_connect_timeout=5)


class Bus:
    """One consumer's view of the streams (asyncio)."""

    def __init__(self, client: Any, streams: Streams, consumer: str, *, max_len: int,
                 dedupe_ttl_s: int) -> None:
        self.r, self.s, self.consumer = client, streams, consumer
        self.max_len, self.ttl = max_len, dedupe_ttl_s
        self._sink = client.register_script(_SINK)
        self._dead = client.register_script(_DEAD)
        self._claim_cursor = "0-0"

    async def ensure_group(self, start: str) -> None:
        """Create the consumer group (and the source stream) unless it exists.

        ``start``: ``new`` reads events added from now on, ``all`` every event the source holds.
        """
        from redis.exceptions import ResponseError

        try:
            await self.r.xgroup_create(self.s.source, self.s.group, id="$" if start == "new" else "0",
                                       mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, count: int, block_ms: int) -> list[tuple[str, dict]]:
        """Up to ``count`` events never delivered to the group, waiting up to ``block_ms``."""
        got = await self.r.xreadgroup(self.s.group, self.consumer, {self.s.source: ">"},
                                      count=count, block=block_ms)
        return _entries(got)

    async def read_own_pending(self, count: int) -> list[tuple[str, dict]]:
        """Events delivered to this consumer and not yet acknowledged (after a restart or a retry)."""
        got = await self.r.xreadgroup(self.s.group, self.consumer, {self.s.source: "0"}, count=count)
        return _entries(got)

    async def claim_stale(self, min_idle_ms: int, count: int) -> list[tuple[str, dict]]:
        """Events another consumer read and left unanswered for ``min_idle_ms`` (it died): now ours."""
        reply = await self.r.xautoclaim(self.s.source, self.s.group, self.consumer,
                                        min_idle_time=min_idle_ms, start_id=self._claim_cursor,
                                        count=count)
        cursor, claimed = reply[0], reply[1]
        self._claim_cursor = _text(cursor)
        return [(_text(i), f) for i, f in claimed if f is not None]

    async def deliver(self, results: list[tuple[str, str, dict[str, Any]]],
                      dead: list[tuple[str, dict[str, Any]]],
                      drop: list[str] = ()) -> list[bool]:
        """Write results and dead letters and acknowledge their entries, in one round trip.

        ``results``: ``(entry id, event id, fields)``; ``dead``: ``(entry id, fields)``;
        ``drop``: entries whose data is gone (trimmed): acknowledged only.
        Returns, per result, whether it was written (False: its event id was answered before).
        """
        pipe = self.r.pipeline(transaction=False)
        if results:
            keys = [self.s.sink, self.s.source]
            args: list[Any] = [self.s.group, self.ttl, self.max_len, len(results)]
            for entry, event_id, fields in results:
                keys.append(self.s.seen + event_id)
                args += [entry, len(fields), *_flat(fields)]
            await self._sink(keys=keys, args=args, client=pipe)
        for entry, fields in dead:
            await self._dead(keys=[self.s.dead_letter, self.s.source],
                       args=[self.s.group, entry, self.max_len, *_flat(fields)], client=pipe)
        if drop:
            pipe.xack(self.s.source, self.s.group, *drop)
        replies = await pipe.execute() if (results or dead or drop) else []
        return [r == 1 for r in replies[0]] if results else []

    async def lag(self) -> dict[str, Any]:
        """The group's ``lag`` (events not yet read) and ``pending`` (read, not acknowledged)."""
        return group_info(await self.r.xinfo_groups(self.s.source), self.s.group)


def group_info(groups: list[dict], group: str) -> dict[str, Any]:
    """``{"lag", "pending", "consumers"}`` of ``group`` from an ``XINFO GROUPS`` reply."""
    for g in groups:
        info = {_text(k): v for k, v in g.items()}
        if _text(info.get("name")) == group:
            lag = info.get("lag")
            return {"lag": int(lag) if lag is not None else None, "pending": int(info["pending"]),
                    "consumers": int(info["consumers"])}
    return {"lag": None, "pending": 0, "consumers": 0}


def dead_fields(entry: str, reason: str, raw: dict) -> dict[str, Any]:
    """A dead letter: why, which entry, and the event as it came (JSON, at most 8 KB)."""
    event = json.dumps({_text(k): _text(v) for k, v in raw.items()}, ensure_ascii=False)
    return {"reason": reason[:1000], "entry_id": entry, "event": event[:8192]}


def _entries(reply: Any) -> list[tuple[str, dict]]:
    out = []
    for _stream, entries in reply or []:
        for entry_id, fields in entries:
            out.append((_text(entry_id), fields))  # fields is None for a trimmed entry
    return out


def _flat(fields: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for k, v in fields.items():
        out += [k, "" if v is None else (json.dumps(v) if isinstance(v, (list, dict, bool)) else v)]
    return out


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
