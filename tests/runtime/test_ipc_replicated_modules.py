"""htable and pike kept equal across the workers of a node through the state bus.

Real Unix sockets (runtime.ipc.Peers) in one process on one asyncio loop; every wait bounded.
Reads happen right after a write on another worker without any loop iteration in between:
the reader drains the bus itself.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from siprouter.modules.htable import Htables, parse_table_definition
from siprouter.modules.pike import BLOCKED, NEW_BLOCKED, OK, Pike, PikeParams
from siprouter.runtime.ipc import Peers


class _Core:
    def on_message(self, data: bytes, src: Any, listener: Any) -> None:
        pass

    def on_peer_request(self, data: bytes, src: Any, listener: Any) -> bool:
        return False


class _Transport:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def send(self, dest: Any, data: bytes) -> None:
        pass


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(fn(*args, **kwargs), 10)

        asyncio.run(bounded())

    return wrapper


async def make_peers(n: int, name: str | None = None) -> list[Peers]:
    node = name or f"t{secrets.token_hex(6)}"
    peers = [Peers(i, n, node) for i in range(n)]
    for p in peers:
        p.bind()
    return peers


def attach(peers: list[Peers]) -> None:
    loop = asyncio.get_running_loop()
    for p in peers:
        p.attach(loop, _Core(), _Transport())


async def settle(cond: Callable[[], bool], limit: float = 1.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.002)
    return cond()


def close(peers: list[Peers]) -> None:
    for p in peers:
        p.close()


TABLES = ["ipban=>size=8;autoexpire=300;", "cnt=>size=4;initval=0;autoexpire=60;"]


def replicated_htables(peers: list[Peers]) -> list[Htables]:
    out = []
    for p in peers:
        ht = Htables([parse_table_definition(t) for t in TABLES])
        ht.replicate(p, saves_store=p.index == 0)
        ht.publish_writes()
        out.append(ht)
    return out


NOW = 1_000_000.0


@run_async
async def test_htable_write_on_one_worker_is_read_at_once_on_the_others() -> None:
    peers = await make_peers(3)
    attach(peers)
    try:
        h0, h1, h2 = replicated_htables(peers)
        h0.tables["ipban"].set("10.0.0.9", 1, NOW)
        # no loop iteration between the write and the reads
        assert h1.tables["ipban"].get("10.0.0.9", NOW) == 1
        assert h2.tables["ipban"].match_name("eq", "10.0.0.9", NOW)
        # the expiry travels with the write: the item is gone everywhere at the same time
        assert h1.tables["ipban"].get("10.0.0.9", NOW + 301) is None
        assert h0.tables["ipban"].get("10.0.0.9", NOW + 301) is None
        assert h2.tables["ipban"].sweep(NOW + 301) == 1
        h2.tables["ipban"].set("a", "x", NOW)
        h2.tables["ipban"].set("b", "y", NOW)
        assert sorted(k for k, _, _ in h0.tables["ipban"].dump(NOW)) == ["a", "b"]
        h1.tables["ipban"].remove("a")
        assert not h0.tables["ipban"].has("a", NOW)
        assert h2.tables["ipban"].get("b", NOW) == "y"
        h0.tables["ipban"].remove_matching(re.compile("^b$"))
        assert len(h2.tables["ipban"]) == 0
        h0.tables["ipban"].set("c", 3, NOW)
        assert h1.tables["ipban"].set_expires("c", 5, NOW)
        assert h2.tables["ipban"].get("c", NOW + 4) == 3
        assert h0.tables["ipban"].get("c", NOW + 6) is None
        h2.tables["ipban"].set("d", 4, NOW)
        h1.tables["ipban"].reset()
        assert len(h0.tables["ipban"]) == 0 and len(h2.tables["ipban"]) == 0
    finally:
        close(peers)


@run_async
async def test_concurrent_increments_on_two_workers_add_up() -> None:
    peers = await make_peers(2)
    attach(peers)
    try:
        h0, h1 = replicated_htables(peers)
        c0, c1 = h0.tables["cnt"], h1.tables["cnt"]
        # both increment before either drained the other's change: deltas commute
        assert c0.add("k", 1, NOW) == 1
        assert c1._add("k", 1, NOW) == 1  # as if c1 had not drained yet...
        c1._publish("a", "k", 1, NOW)  # ...and then published its increment
        assert c0.get("k", NOW) == 2
        assert c1.get("k", NOW) == 2
        for _ in range(5):
            c1.add("k", -1, NOW)
        assert c0.get("k", NOW) == -3
    finally:
        close(peers)


@run_async
async def test_restarted_worker_receives_a_snapshot() -> None:
    peers = await make_peers(2)
    name = peers[0].node
    attach(peers)
    try:
        h0, h1 = replicated_htables(peers)
        for i in range(3000):  # more than one snapshot datagram
            h1.tables["ipban"].set(f"10.1.{i // 250}.{i % 250}", i, NOW)
            if i % 5 == 0:  # the reader's queue holds only a few datagrams
                peers[0].sync()
        h1.tables["cnt"].add("calls", 7, NOW)
        assert len(h0.tables["ipban"]) == 3000
        # worker 1 dies and starts again: empty tables, then the hello brings the snapshot
        peers[1].close()
        peers[1] = Peers(1, 2, name)
        peers[1].bind()
        h1 = Htables([parse_table_definition(t) for t in TABLES])
        h1.replicate(peers[1])
        h1.tables["cnt"].set("calls", 0, NOW)  # the start event's value stays local...
        attach(peers[1:])
        assert await settle(lambda: peers[0].sync() >= 0 and len(h1.tables["ipban"]) == 3000)
        h1.publish_writes()
        # ...and the node's live value wins over it
        assert h1.tables["cnt"].get("calls", NOW) == 7
        assert h1.tables["ipban"].get("10.1.11.249", NOW) == 2999
        assert h0.tables["cnt"].get("calls", NOW) == 7
        h1.tables["ipban"].remove("10.1.0.0")
        assert not h0.tables["ipban"].has("10.1.0.0", NOW)
    finally:
        close(peers)


@run_async
async def test_only_worker_zero_writes_tables_back() -> None:
    peers = await make_peers(2)
    try:
        h0, h1 = replicated_htables(peers)
        assert h0.saves_store and not h1.saves_store
        assert h1.save(NOW) == 0
    finally:
        close(peers)


@run_async
async def test_malformed_replicated_changes_are_dropped() -> None:
    peers = await make_peers(2)
    attach(peers)
    try:
        _, h1 = replicated_htables(peers)
        peers[0].publish("htable", ("ipban", "?", 1))
        peers[0].publish("htable", ("nosuch", "d", "k"))
        peers[0].publish("htable", "garbage")
        peers[0].publish("htable", ("ipban", "s", "k"))  # too few arguments
        peers[0].publish("htable", ("ipban", "r", "(", 0))  # bad regexp
        peers[0].publish("pike", [("1.2.3.4", "x")])
        peers[0].publish("htable", ("ipban", "s", "ok", 1, NOW, None))
        assert h1.tables["ipban"].get("ok", NOW) == 1
        assert not h1.tables["ipban"].has("k", NOW)
    finally:
        close(peers)


def single_pike_hits_until_blocked(limit: int, now: float) -> int:
    p = Pike(PikeParams(sampling_time_unit=2, reqs_density_per_unit=limit))
    for i in range(1, 10 * limit):
        if p.check("192.0.2.1", now) != OK:
            return i
    raise AssertionError("never blocked")


@run_async
async def test_pike_flood_spread_over_workers_is_caught_as_with_one() -> None:
    limit = 30
    for n in (2, 4):
        peers = await make_peers(n)
        attach(peers)
        try:
            pikes = []
            for p in peers:
                pk = Pike(PikeParams(sampling_time_unit=2, reqs_density_per_unit=limit))
                pk.replicate(p)
                pikes.append(pk)
            now = 5000.0  # the start of a sampling unit
            results: list[int] = []
            for i in range(10 * limit):
                results.append(pikes[i % n].check("192.0.2.1", now))
                if results[-1] != OK:
                    break
            hits = len(results)
            alone = single_pike_hits_until_blocked(limit, now)
            assert alone == limit
            assert limit <= hits <= limit + (n - 1) * (pikes[0].step - 1), (n, hits)
            assert results[-1] == NEW_BLOCKED
            # every other worker knows the source is red: the next hit answers -1
            for pk in pikes:
                assert pk.check("192.0.2.1", now + 0.1) == BLOCKED
            assert all(pk.is_blocked("192.0.2.1", now + 0.2) for pk in pikes)
            # another IP below the limit stays fine everywhere
            assert all(pk.check("192.0.2.2", now) == OK for pk in pikes)
        finally:
            close(peers)


@run_async
async def test_pike_partial_batches_are_published_by_the_sweep() -> None:
    peers = await make_peers(2)
    attach(peers)
    try:
        p0, p1 = (Pike(PikeParams(sampling_time_unit=2, reqs_density_per_unit=40))
                  for _ in range(2))
        p0.replicate(peers[0])
        p1.replicate(peers[1])
        assert p0.step == 5
        now = 6000.0
        for _ in range(3):  # below one batch: not published yet
            p0.check("198.51.100.7", now)
        assert [x for x in p1.list(now) if x[0] == "198.51.100.7"] == []
        p0.sweep(now + 0.5)
        assert [x[:3] for x in p1.list(now + 0.5)] == [("198.51.100.7", 0, 3)]
        # in the next unit the remote hits count as the previous unit's
        p1.check("198.51.100.7", now + 2.1)
        assert [x[:3] for x in p1.list(now + 2.1)] == [("198.51.100.7", 3, 1)]
    finally:
        close(peers)


def test_single_process_pike_and_htable_touch_no_bus() -> None:
    p = Pike(PikeParams(sampling_time_unit=2, reqs_density_per_unit=3))
    assert p.bus is None and p.flush() == 0
    assert [p.check("192.0.2.1", 10.0) for _ in range(4)] == [OK, OK, NEW_BLOCKED, BLOCKED]
    assert all(len(n) == 5 for n in p.nodes.values())  # no pending-hits slot
    ht = Htables([parse_table_definition(t) for t in TABLES])
    ht.publish_writes()  # not replicated: stays local
    t = ht.tables["ipban"]
    assert t.bus is None
    t.set("k", 1, NOW)
    assert t.get("k", NOW) == 1
