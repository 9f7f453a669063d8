"""runtime.ipc: hand-offs, queries, TCP directory and the state bus over real Unix sockets.

Several :class:`Peers` of one node live in this process on one asyncio loop; every wait is
bounded (a few loop iterations or at most a second).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from siprouter.modules.location import Binding
from siprouter.runtime import ipc
from siprouter.runtime.ipc import (
    Peers,
    ReplicatedLocation,
    branch_prefix,
    owner_of_branch,
    owner_of_call_id,
)
from siprouter.sip.message import parse_message
from siprouter.sip.types import Endpoint
from siprouter.storage.memory import MemoryLocationStore

SRC = Endpoint("udp", "127.0.0.1", 5099)


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop, bounded to 10 s."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(fn(*args, **kwargs), 10)

        asyncio.run(bounded())

    return wrapper


class FakeCore:
    def __init__(self, claims: bool = False) -> None:
        self.messages: list[tuple[bytes, Endpoint, Any]] = []
        self.queried: list[bytes] = []
        self.claims = claims

    def on_message(self, data: bytes, src: Endpoint, listener: Any) -> None:
        self.messages.append((data, src, listener))

    def on_peer_request(self, data: bytes, src: Endpoint, listener: Any) -> bool:
        self.queried.append(data)
        return self.claims


class FakeTransport:
    def __init__(self) -> None:
        self.listeners = ["udp-listener", "tcp-listener"]
        self.sent: list[tuple[Endpoint, bytes]] = []

    def send(self, dest: Endpoint, data: bytes) -> None:
        self.sent.append((dest, data))


def response(branch: str) -> bytes:
    return (
        "SIP/2.0 180 Ringing\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKabc\r\n"
        "From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


CANCEL = (
    b"CANCEL sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKabc\r\n"
    b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c1\r\nCSeq: 1 CANCEL\r\n"
    b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


Node = tuple[list[Peers], list[FakeCore], list[FakeTransport]]


async def make_node(n: int, claims: Callable[[int], bool] = lambda i: False) -> Node:
    loop = asyncio.get_running_loop()
    name = f"test{secrets.token_hex(6)}"
    peers = [Peers(i, n, name) for i in range(n)]
    cores = [FakeCore(claims(i)) for i in range(n)]
    transports = [FakeTransport() for _ in range(n)]
    for p in peers:
        p.bind()
    for p, c, t in zip(peers, cores, transports, strict=True):
        p.attach(loop, c, t)
    await settle()
    return peers, cores, transports


async def settle(cond: Callable[[], bool] | None = None, limit: float = 1.0) -> None:
    """Let the loop run until ``cond`` holds (bounded), or a few iterations without one."""
    deadline = time.monotonic() + limit
    for _ in range(10_000):
        await asyncio.sleep(0.001)
        if cond is None:
            if time.monotonic() > deadline - limit + 0.02:
                return
        elif cond() or time.monotonic() > deadline:
            return


def close(peers: list[Peers]) -> None:
    for p in peers:
        p.close()


def test_branch_prefix_round_trip() -> None:
    for i in (0, 1, 7, 255, 4095):
        assert owner_of_branch(branch_prefix(i) + "0123456789abcdef.0") == i
    assert owner_of_branch("z9hG4bK0123456789abcdef.s") == -1  # stateless: hex, no tag
    assert owner_of_branch("z9hG4bKwxyz") == -1
    assert owner_of_branch("xxxxxxxw001") == -1
    assert owner_of_branch(None) == -1
    with pytest.raises(ValueError):
        Peers(2, 2, "n")


def test_owner_of_call_id_reads_the_header_in_any_spelling() -> None:
    import zlib

    want = zlib.crc32(b"abc@host") % 4
    for line in (b"Call-ID: abc@host", b"call-id:abc@host  ", b"CALL-ID \t: abc@host",
                 b"i: abc@host"):
        data = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" + line + \
            b"\r\nCSeq: 1 INVITE\r\n\r\nbody\r\ni: not-this\r\n"
        assert owner_of_call_id(data, 4) == want, line
    # CANCEL and its INVITE, ACK and BYE of one call: one owner, whatever else differs
    assert owner_of_call_id(CANCEL, 7) == owner_of_call_id(response("z9hG4bKx"), 7)
    # no Call-ID in the header (only in the body), or an empty one: stays where it is
    assert owner_of_call_id(b"OPTIONS sip:x SIP/2.0\r\n\r\nCall-ID: x\r\n", 2) == -1
    assert owner_of_call_id(b"OPTIONS sip:x SIP/2.0\r\nCall-ID:  \r\n\r\n", 2) == -1
    assert owner_of_call_id(b"\r\n\r\n", 2) == -1
    # spread: 1000 Call-IDs over 2 workers
    owners = [owner_of_call_id(b"X sip:x SIP/2.0\r\nCall-ID: %d@h\r\n\r\n" % i, 2)
              for i in range(1000)]
    assert 400 < owners.count(0) < 600


@run_async
async def test_request_goes_to_the_worker_of_its_call_id() -> None:
    peers, cores, _ = await make_node(3)
    try:
        owner = owner_of_call_id(CANCEL, 3)
        other = (owner + 1) % 3
        assert peers[other].dispatch_request(CANCEL, SRC, "udp-listener")
        await settle(lambda: bool(cores[owner].messages))
        assert cores[owner].messages == [(CANCEL, SRC, "udp-listener")]
        assert peers[other].stats["requests_out"] == 1
        assert peers[owner].stats["requests_in"] == 1
        # the owner keeps it; without a Call-ID it stays where it arrived
        assert not peers[owner].dispatch_request(CANCEL, SRC, "udp-listener")
        assert not peers[other].dispatch_request(b"\r\n\r\n", SRC, "udp-listener")
    finally:
        close(peers)


@run_async
async def test_response_is_handed_to_the_worker_named_in_the_branch() -> None:
    peers, cores, _ = await make_node(3)
    try:
        data = response(branch_prefix(2) + "00ff.0")
        msg = parse_message(data)
        assert peers[0].handoff_response(msg, SRC, "tcp-listener")
        await settle(lambda: bool(cores[2].messages))
        assert cores[2].messages == [(data, SRC, "tcp-listener")]
        assert not cores[1].messages and not cores[0].messages
        # the owner itself, a foreign branch and an out-of-range worker: not handed
        assert not peers[2].handoff_response(msg, SRC, "udp-listener")
        assert not peers[0].handoff_response(parse_message(response("z9hG4bKforeign")), SRC,
                                             None)
        assert not peers[0].handoff_response(
            parse_message(response(branch_prefix(9) + "00.0")), SRC, None)
        assert peers[0].stats["responses_out"] == 1 and peers[2].stats["responses_in"] == 1
    finally:
        close(peers)


@run_async
async def test_unmatched_cancel_goes_to_the_peer_that_claims_it() -> None:
    peers, cores, _ = await make_node(3, claims=lambda i: i == 1)
    try:
        assert peers[0].handoff_request(parse_message(CANCEL), SRC, "udp-listener")
        await settle(lambda: peers[0].stats["queries_claimed"] == 1)
        assert cores[1].queried == [CANCEL] and cores[2].queried == [CANCEL]
        assert peers[0].stats["queries_claimed"] == 1
        assert cores[0].messages == []  # the receiver does not handle it itself
    finally:
        close(peers)


@run_async
async def test_unclaimed_cancel_is_handled_where_it_arrived() -> None:
    peers, cores, _ = await make_node(2)
    try:
        assert peers[0].handoff_request(parse_message(CANCEL), SRC, "udp-listener")
        await settle(lambda: bool(cores[0].messages))
        assert cores[0].messages == [(CANCEL, SRC, "udp-listener")]
        # handled locally without asking again (no loop)
        assert peers[0].stats["queries_out"] == 1 and peers[0].stats["queries_unclaimed"] == 1
    finally:
        close(peers)


@run_async
async def test_query_to_a_dead_peer_times_out_and_is_handled_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ipc, "QUERY_TIMEOUT", 0.05)
    peers, cores, _ = await make_node(2)
    try:
        # the peer's sockets still exist but nobody reads them
        assert peers[1].loop is not None and peers[1]._msg_sock is not None
        peers[1].loop.remove_reader(peers[1]._msg_sock.fileno())
        assert peers[0].handoff_request(parse_message(CANCEL), SRC, None)
        await settle(lambda: bool(cores[0].messages))
        assert len(cores[0].messages) == 1
        # a peer that is gone entirely: not reachable, so the caller handles it at once
        peers[1].close()
        assert not peers[0].handoff_request(parse_message(CANCEL), SRC, None)
    finally:
        close(peers)


@run_async
async def test_tcp_directory_and_forwarding() -> None:
    peers, _, transports = await make_node(3)
    try:
        key = ("127.0.0.1", 40000)
        peers[1].connection_changed(key, True)
        await settle(lambda: key in peers[0].tcp_owner and key in peers[2].tcp_owner)
        assert peers[0].tcp_owner[key] == 1 and peers[2].tcp_owner[key] == 1
        dest = Endpoint("tcp", "127.0.0.1", 40000)
        assert peers[0].forward_tcp(dest, b"bytes")
        await settle(lambda: bool(transports[1].sent))
        assert transports[1].sent == [(dest, b"bytes")]
        assert not peers[1].forward_tcp(dest, b"x")  # the holder sends itself
        assert not peers[0].forward_tcp(Endpoint("tcp", "127.0.0.1", 1), b"x")  # nobody holds
        peers[1].connection_changed(key, False)
        await settle(lambda: key not in peers[0].tcp_owner)
        assert key not in peers[0].tcp_owner and key not in peers[2].tcp_owner
    finally:
        close(peers)


@run_async
async def test_restarted_worker_learns_the_directory_and_peers_forget_its_entries() -> None:
    peers, cores, transports = await make_node(2)
    loop = asyncio.get_running_loop()
    try:
        peers[0].connection_changed(("10.0.0.1", 5060), True)
        peers[1].connection_changed(("10.0.0.2", 5060), True)
        await settle(lambda: ("10.0.0.2", 5060) in peers[0].tcp_owner)
        peers[1].close()
        fresh = Peers(1, 2, peers[0].node)
        fresh.bind()
        fresh.attach(loop, cores[1], transports[1])
        peers[1] = fresh
        await settle(lambda: ("10.0.0.1", 5060) in fresh.tcp_owner)
        assert fresh.tcp_owner == {("10.0.0.1", 5060): 0}
        assert ("10.0.0.2", 5060) not in peers[0].tcp_owner
        # the old connected channel of worker 0 reconnects to the new socket
        msg = parse_message(response(branch_prefix(1) + "ab.0"))
        assert peers[0].handoff_response(msg, SRC, None)
        await settle(lambda: bool(cores[1].messages))
        assert len(cores[1].messages) == 1
    finally:
        close(peers)


@run_async
async def test_bus_change_is_visible_at_once_after_publish() -> None:
    peers, _, _ = await make_node(2)
    try:
        got: list[Any] = []
        peers[1].subscribe("htable", got.append)
        # no loop iteration between publish and sync: the datagram is already queued
        peers[0].publish("htable", ["k", 1, None])
        assert peers[1].sync() == 1
        assert got == [["k", 1, None]]
        assert peers[1].sync() == 0
    finally:
        close(peers)


@run_async
async def test_bus_queues_when_the_peer_queue_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipc, "PUBLISH_WAIT", 0.0)  # the reader runs on this same thread
    peers, _, _ = await make_node(2)
    try:
        got: list[Any] = []
        peers[1].subscribe("t", got.append)
        assert peers[1].loop is not None and peers[1]._bus_sock is not None
        peers[1].loop.remove_reader(peers[1]._bus_sock.fileno())
        n = 300  # far above net.unix.max_dgram_qlen: the sender must queue, not drop
        for i in range(n):
            peers[0].publish("t", i)
        assert peers[0]._out[(1, "b")].queue  # some are waiting for room
        for _ in range(2000):
            peers[1].sync()
            if len(got) == n:
                break
            await asyncio.sleep(0.001)  # the writer callback sends more
        assert got == list(range(n))  # all of them, in order
        assert peers[0].stats["dropped"] == 0
    finally:
        close(peers)


def binding(aor: str, contact: str, expires: float) -> Binding:
    return Binding(aor, contact, expires, call_id="c", cseq=1)


@run_async
async def test_replicated_location() -> None:
    peers, _, _ = await make_node(2)
    try:
        store = MemoryLocationStore()
        loc0 = ReplicatedLocation(store, peers[0], sweeps_store=True)
        loc1 = ReplicatedLocation(store, peers[1])
        now = 1000.0
        loc0.save(binding("alice", "sip:alice@10.0.0.1", now + 60))
        # a lookup on the other worker sees it without any loop iteration in between
        assert [b.contact for b in loc1.lookup("alice", now)] == ["sip:alice@10.0.0.1"]
        loc1.remove("alice", "sip:alice@10.0.0.1")
        assert loc0.lookup("alice", now) == []
        assert store.load_all(now) == []
        loc1.save(binding("bob", "sip:bob@10.0.0.2", now + 1))
        assert loc0.count() == 1
        assert [b.aor for b in loc1.sweep(now + 2)] == ["bob"]
        assert len(store.load_all(now)) == 1  # only the sweeping worker deletes stored rows
        assert [b.aor for b in loc0.sweep(now + 2)] == ["bob"]
        assert store.load_all(now) == [] and loc0.count() == 0 and loc1.count() == 0
    finally:
        close(peers)
