"""The bus on a real Redis: the idempotent sink, dead letters, and claiming a dead consumer's events."""

from __future__ import annotations

import asyncio
import time

import pytest

from framework.streaming.bus import Bus, Streams, connect, connect_sync, dead_fields

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def _streams(tag: str) -> Streams:
    return Streams(source=f"t:{tag}:events", group="g", sink=f"t:{tag}:out",
                   dead_letter=f"t:{tag}:dead", seen=f"t:{tag}:seen:")


def test_a_redelivered_event_writes_no_second_result(redis_server):
    async def run():
        client = connect(f"redis://{redis_server}/0")
        bus = Bus(client, _streams("dedupe"), "c0", max_len=1000, dedupe_ttl_s=60)
        await bus.ensure_group("all")
        await bus.ensure_group("all")  # idempotent
        for i in (1, 2, 1):  # event 1 twice, as a producer retry would send it
            await client.xadd(bus.s.source, {"event_id": f"e{i}", "x": "1"})
        got = await bus.read_new(10, 100)
        written = await bus.deliver([(entry, f["event_id".encode()].decode(), {"n": 1})
                                     for entry, f in got], [])
        assert written == [True, True, False]
        assert await client.xlen(bus.s.sink) == 2
        assert (await bus.lag())["pending"] == 0  # all three acknowledged
        await client.aclose()

    asyncio.run(run())


def test_dead_letters_keep_the_reason_and_are_acknowledged(redis_server):
    async def run():
        client = connect(f"redis://{redis_server}/0")
        bus = Bus(client, _streams("dead"), "c0", max_len=1000, dedupe_ttl_s=60)
        await bus.ensure_group("all")
        await client.xadd(bus.s.source, {"colour": "red"})
        ((entry, fields),) = await bus.read_new(10, 100)
        await bus.deliver([], [(entry, dead_fields(entry, "unknown field(s) colour", fields))])
        ((_, dead),) = await client.xrange(bus.s.dead_letter)
        assert dead[b"reason"] == b"unknown field(s) colour" and b'"colour": "red"' in dead[b"event"]
        assert (await bus.lag())["pending"] == 0
        await client.aclose()

    asyncio.run(run())


def test_events_a_dead_consumer_held_are_claimed_by_another(redis_server):
    async def run():
        client = connect(f"redis://{redis_server}/0")
        dead = Bus(client, _streams("claim"), "c0", max_len=1000, dedupe_ttl_s=60)
        alive = Bus(client, _streams("claim"), "c1", max_len=1000, dedupe_ttl_s=60)
        await dead.ensure_group("all")
        for i in range(5):
            await client.xadd(dead.s.source, {"event_id": f"e{i}"})
        assert len(await dead.read_new(10, 100)) == 5  # read, never answered: c0 dies here
        assert await alive.claim_stale(60_000, 10) == []  # not idle long enough yet
        time.sleep(0.3)
        claimed = await alive.claim_stale(200, 10)
        assert [f[b"event_id"] for _, f in claimed] == [f"e{i}".encode() for i in range(5)]
        assert await alive.read_own_pending(10) != []  # now c1's
        await client.aclose()

    asyncio.run(run())


def test_the_blocking_client_answers(redis_server):
    client = connect_sync(f"redis://{redis_server}/0")
    assert client.ping()
    client.close()
