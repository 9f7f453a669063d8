"""Messages between the worker processes of one node: hand-offs, TCP directory, state bus.

Theory of operation (docs/workers.md has the reasons)
-----------------------------------------------------
Every worker binds two Unix datagram sockets in the abstract namespace,
``\\0siprouter.<node>.<index>.m`` (hand-offs and the TCP directory) and ``...<index>.b`` (the
replicated-state bus). A worker sends to a peer through one socket per (peer, kind) connected to
the peer's address: a datagram is one whole message, delivered in order, and a connected sender
can wait for room in the peer's queue (``EAGAIN`` -> queue + writer callback) instead of
dropping -- the kernel limits an unconnected receiver to ``net.unix.max_dgram_qlen`` (often 10)
datagrams.

Every datagram opens with one fixed header (:data:`_HDR`): kind, sender index, a query id, a
listener index, a transport code, a port and a short text (a host, or a bus topic); the payload
follows. Kinds:

``D``  a UDP request whose Call-ID belongs to another worker (:func:`owner_of_call_id`): the
       owner runs it through ``core.on_message`` as if it had received it itself.
``R``  a response whose top Via branch names another worker (``z9hG4bKw<3 hex>``...): the owner
       runs it through ``core.on_message`` as if it had received it itself.
``Q``  a CANCEL, or an ACK with no Route header, that matched no local transaction: asked of
       every peer; ``A`` answers claimed / not mine. When nobody claims it (or after
       :data:`QUERY_TIMEOUT`) the worker that received it handles it itself.
``T``  bytes for a TCP destination whose connection another worker holds; that worker sends them.
``O``/``C`` a TCP connection key (host, port) opened / closed by the sender (the directory).
``H``  hello from a (re)started worker: peers forget its old directory entries and send theirs.
``S``  (bus socket) a state change on a topic; the payload is ``marshal``-ed plain data.

Consistency of the bus: a worker publishes a change before it answers the request that caused it
(e.g. the 200 to a REGISTER), and every reader drains its bus socket (non-blocking ``recv`` until
``EAGAIN``) before it reads replicated state (:meth:`Peers.sync`), so a read never misses a change
that was acknowledged anywhere on the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import marshal
import re
import select
import socket
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..modules.location import Binding, Location
from ..proxy.routing import MAGIC_COOKIE
from ..sip.types import Endpoint

__all__ = [
    "QUERY_TIMEOUT",
    "Peers",
    "ReplicatedLocation",
    "branch_prefix",
    "owner_of_branch",
    "owner_of_call_id",
]

log = logging.getLogger("siprouter.ipc")

# kind(1) sender(2) query id(4) listener(1) transport(1) port(2) text length(1), then text, payload
_HDR = struct.Struct("!cHIBBHB")
_PROTOS = ("udp", "tcp", "tls", "ws", "wss")
_PROTO_CODE = {p: i for i, p in enumerate(_PROTOS)}
_NO_LISTENER = 255

#: seconds to wait for every peer's answer to a ``Q`` before handling the request locally
QUERY_TIMEOUT = 0.5
#: datagrams waiting for room in one peer's queue before further ones are dropped
MAX_QUEUE = 10000
#: longest a publisher waits for room in a peer's bus queue before it answers anyway
PUBLISH_WAIT = 0.2
_RECV_SIZE = 1 << 17
_SOCK_BUF = 1 << 22
_BATCH = 256  # datagrams handled per readable callback before yielding to the loop

_TAG_WIDTH = 3  # hex digits of the worker index in a branch


#: the Call-ID header field of a raw message: full or compact name, any case (RFC 3261 §7.3.1)
_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.I)


def owner_of_call_id(data: bytes, count: int) -> int:
    """The worker (of ``count``) that handles a UDP request with this raw text: the CRC-32 of its
    Call-ID modulo ``count``; -1 when there is no Call-ID in the header (it stays where it is).

    Every request of a call - retransmissions, CANCEL, ACK, in-dialog requests from either side -
    carries the same Call-ID, so they all reach one worker, whichever the kernel gave them to."""
    end = data.find(b"\r\n\r\n")
    m = _CALL_ID.search(data, 0, end if end >= 0 else len(data))
    if m is None:
        return -1
    cid = m.group(1).strip()
    if not cid:
        return -1
    return zlib.crc32(cid) % count


def branch_prefix(index: int) -> str:
    """``z9hG4bKw<index as 3 hex digits>``: the start of every branch worker ``index`` makes.

    ``w`` is not a hex digit, so a branch of ours without a worker tag (stateless forwarding,
    ``z9hG4bK<hex>.s``) is never mistaken for a tagged one."""
    return f"{MAGIC_COOKIE}w{index:0{_TAG_WIDTH}x}"


def owner_of_branch(branch: str | None) -> int:
    """The worker index a tagged branch names, -1 for any other branch."""
    if not branch or len(branch) < 8 + _TAG_WIDTH or branch[7] != "w":
        return -1
    if not branch.startswith(MAGIC_COOKIE):
        return -1
    try:
        return int(branch[8 : 8 + _TAG_WIDTH], 16)
    except ValueError:
        return -1


def _address(node: str, index: int, kind: str) -> str:
    return f"\0siprouter.{node}.{index}.{kind}"


def _pack(kind: bytes, sender: int, qid: int = 0, listener: int = _NO_LISTENER,
          proto: str = "udp", port: int = 0, text: str = "", payload: bytes = b"") -> bytes:
    t = text.encode()
    return _HDR.pack(kind, sender, qid, listener, _PROTO_CODE.get(proto, 0), port, len(t)) + t \
        + payload


class _Channel:
    """The sending side towards one peer socket."""

    __slots__ = ("address", "queue", "sock", "writing")

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        self.queue: deque[bytes] = deque()
        self.writing = False

    def connect(self) -> bool:
        self.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setblocking(False)
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCK_BUF)
        try:
            s.connect(self.address)
        except OSError:
            s.close()
            return False
        self.sock = s
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _Query:
    __slots__ = ("data", "listener", "remaining", "src", "timer")

    def __init__(self, data: bytes, src: Endpoint, listener: Any, remaining: int) -> None:
        self.data = data
        self.src = src
        self.listener = listener
        self.remaining = remaining
        self.timer: asyncio.TimerHandle | None = None


class Peers:
    """This worker's end of the node's message fabric. See the module docstring.

    ``core`` needs ``on_message(data, src, listener)`` and
    ``on_peer_request(data, src, listener) -> bool``; ``transport`` needs ``listeners`` and
    ``send(dest, data)``."""

    def __init__(self, index: int, count: int, node: str) -> None:
        if not 0 <= index < count or count > 16 ** _TAG_WIDTH:
            raise ValueError(f"bad worker index {index} of {count}")
        self.index = index
        self.count = count
        self.node = node
        self.prefix = branch_prefix(index)
        self.core: Any = None
        self.transport: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._msg_sock: socket.socket | None = None
        self._bus_sock: socket.socket | None = None
        self._out: dict[tuple[int, str], _Channel] = {}
        self._topics: dict[str, Callable[[Any], None]] = {}
        self._on_start: list[Callable[[int], None]] = []
        self._queries: dict[int, _Query] = {}
        self._qids = itertools.count(1)
        self._handing = False  # inside a hand-off from a peer: never hand it on again
        self.tcp_owner: dict[tuple[str, int], int] = {}
        self._own_keys: set[tuple[str, int]] = set()
        self.stats: dict[str, int] = {
            "requests_out": 0, "requests_in": 0,
            "responses_out": 0, "responses_in": 0, "queries_out": 0, "queries_claimed": 0,
            "queries_in": 0, "queries_unclaimed": 0, "tcp_out": 0, "tcp_in": 0,
            "published": 0, "applied": 0, "dropped": 0,
        }

    # -- lifecycle --------------------------------------------------------------------------------
    def bind(self) -> None:
        """Bind this worker's two sockets (before loading state, so no change is missed)."""
        socks: list[socket.socket] = []
        for kind in ("m", "b"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.setblocking(False)
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCK_BUF)
            try:
                s.bind(_address(self.node, self.index, kind))
            except OSError:
                s.close()
                for o in socks:
                    o.close()
                raise
            socks.append(s)
        self._msg_sock, self._bus_sock = socks

    def attach(self, loop: asyncio.AbstractEventLoop, core: Any, transport: Any) -> None:
        """Start receiving; announce this worker to its peers."""
        if self._msg_sock is None or self._bus_sock is None:
            self.bind()
        assert self._msg_sock is not None and self._bus_sock is not None
        self.loop = loop
        self.core = core
        self.transport = transport
        loop.add_reader(self._msg_sock.fileno(), self._on_msg_readable)
        loop.add_reader(self._bus_sock.fileno(), self.sync)
        hello = _pack(b"H", self.index)
        for peer in self._others():
            self._send(peer, "m", hello)

    def close(self) -> None:
        loop = self.loop
        for s in (self._msg_sock, self._bus_sock):
            if s is not None:
                if loop is not None and not loop.is_closed():
                    loop.remove_reader(s.fileno())
                s.close()
        self._msg_sock = self._bus_sock = None
        for ch in self._out.values():
            if ch.writing and ch.sock is not None and loop is not None and not loop.is_closed():
                loop.remove_writer(ch.sock.fileno())
            ch.close()
        self._out.clear()
        for q in self._queries.values():
            if q.timer is not None:
                q.timer.cancel()
        self._queries.clear()

    def _others(self) -> range | list[int]:
        return [i for i in range(self.count) if i != self.index]

    # -- sending ----------------------------------------------------------------------------------
    def _send(self, peer: int, kind: str, data: bytes) -> bool:
        """Queue-or-send one datagram to ``peer``; False when the peer cannot be reached."""
        key = (peer, kind)
        ch = self._out.get(key)
        if ch is None:
            ch = self._out[key] = _Channel(_address(self.node, peer, kind))
        if ch.queue:
            if len(ch.queue) >= MAX_QUEUE:
                self.stats["dropped"] += 1
                return False
            ch.queue.append(data)
            return True
        for attempt in (0, 1):
            if ch.sock is None and not ch.connect():
                break
            assert ch.sock is not None
            try:
                ch.sock.send(data)
                return True
            except BlockingIOError:
                ch.queue.append(data)
                self._arm_writer(ch)
                return True
            except OSError as exc:
                # the peer is gone (ECONNREFUSED) or was restarted: connect again, once
                ch.close()
                if attempt:
                    log.debug("ipc: cannot send to worker %d: %s", peer, exc)
        self.stats["dropped"] += 1
        return False

    def _arm_writer(self, ch: _Channel) -> None:
        if not ch.writing and self.loop is not None and ch.sock is not None:
            ch.writing = True
            self.loop.add_writer(ch.sock.fileno(), self._flush, ch)

    def _flush(self, ch: _Channel) -> None:
        sock = ch.sock
        while ch.queue and sock is not None:
            try:
                sock.send(ch.queue[0])
            except BlockingIOError:
                return
            except OSError as exc:
                log.info("ipc: dropping %d queued messages to %s: %s", len(ch.queue),
                         ch.address[1:], exc)
                self.stats["dropped"] += len(ch.queue)
                ch.queue.clear()
                break
            ch.queue.popleft()
        if ch.writing and self.loop is not None and sock is not None:
            self.loop.remove_writer(sock.fileno())
        ch.writing = False

    def _wait_flushed(self, channels: Sequence[_Channel], limit: float) -> None:
        """Bounded synchronous wait until ``channels`` have sent what they queued."""
        deadline = time.monotonic() + limit
        for ch in channels:
            while ch.queue and ch.sock is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("ipc: a peer's bus queue stays full; answering before it drained")
                    return
                select.select([], [ch.sock], [], left)
                self._flush(ch)
                if ch.queue:
                    self._arm_writer(ch)

    # -- replicated state -------------------------------------------------------------------------
    def subscribe(self, topic: str, handler: Callable[[Any], None]) -> None:
        """Call ``handler(payload)`` for every change another worker publishes on ``topic``."""
        if len(topic.encode()) > 255:
            raise ValueError("topic name too long")
        self._topics[topic] = handler

    def publish(self, topic: str, payload: Any) -> None:
        """Send a change to every other worker before this returns (bounded wait when a peer's
        queue is full). ``payload``: plain data (``marshal``: tuples, lists, str, numbers, None).
        """
        data = _pack(b"S", self.index, text=topic, payload=marshal.dumps(payload))
        waiting = []
        for peer in self._others():
            self._send(peer, "b", data)
            ch = self._out.get((peer, "b"))
            if ch is not None and ch.queue:
                waiting.append(ch)
        self.stats["published"] += 1
        if waiting:
            self._wait_flushed(waiting, PUBLISH_WAIT)

    def publish_to(self, peer: int, topic: str, payload: Any) -> bool:
        """Send one change to one peer only (a state snapshot for a restarted worker); no wait.
        False when the peer cannot be reached."""
        if peer == self.index or not 0 <= peer < self.count:
            return False
        data = _pack(b"S", self.index, text=topic, payload=marshal.dumps(payload))
        return self._send(peer, "b", data)

    def on_peer_start(self, handler: Callable[[int], None]) -> None:
        """Call ``handler(index)`` when worker ``index`` (re)starts and says hello: the place to
        send it the state it missed (:meth:`publish_to`)."""
        self._on_start.append(handler)

    def sync(self) -> int:
        """Apply every change waiting on the bus socket (non-blocking); returns how many."""
        sock = self._bus_sock
        if sock is None:
            return 0
        n = 0
        size = _HDR.size
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # pragma: no cover
                break
            n += 1
            if len(data) < size:
                continue
            tlen = data[size - 1]
            topic = data[size : size + tlen].decode(errors="replace")
            handler = self._topics.get(topic)
            if handler is None:
                continue
            try:
                handler(marshal.loads(data[size + tlen :]))
            except Exception:
                log.exception("ipc: applying a change on topic %s failed", topic)
        self.stats["applied"] += n
        return n

    # -- hand-off of messages ---------------------------------------------------------------------
    def dispatch_request(self, data: bytes, src: Endpoint, listener: Any) -> bool:
        """Hand a UDP request to the worker its Call-ID belongs to; True when handed."""
        if self._handing:
            return False
        owner = owner_of_call_id(data, self.count)
        if owner < 0 or owner == self.index:
            return False
        pkt = _pack(b"D", self.index, 0, self._listener_index(listener), src.proto, src.port,
                    src.host, data)
        if self._send(owner, "m", pkt):
            self.stats["requests_out"] += 1
            return True
        return False

    def handoff_response(self, msg: Any, src: Endpoint, listener: Any) -> bool:
        """Hand a response to the worker its top Via branch names; True when handed."""
        if self._handing:
            return False
        owner = owner_of_branch(msg.top_branch())
        if owner < 0 or owner == self.index or owner >= self.count:
            return False
        data = _pack(b"R", self.index, 0, self._listener_index(listener), src.proto, src.port,
                     src.host, msg.raw)
        if self._send(owner, "m", data):
            self.stats["responses_out"] += 1
            return True
        return False

    def handoff_request(self, msg: Any, src: Endpoint, listener: Any) -> bool:
        """Ask every peer to take a CANCEL/ACK that matched no local transaction.

        True: the question is out, the answers decide (see the module docstring); False:
        handle it here and now."""
        if self._handing or self.count < 2 or self.loop is None:
            return False
        qid = next(self._qids) & 0xFFFFFFFF
        data = _pack(b"Q", self.index, qid, self._listener_index(listener), src.proto, src.port,
                     src.host, msg.raw)
        sent = 0
        for peer in self._others():
            if self._send(peer, "m", data):
                sent += 1
        if not sent:
            return False
        q = _Query(msg.raw, src, listener, sent)
        q.timer = self.loop.call_later(QUERY_TIMEOUT, self._query_done, qid, False)
        self._queries[qid] = q
        self.stats["queries_out"] += 1
        return True

    def _query_done(self, qid: int, claimed: bool) -> None:
        q = self._queries.pop(qid, None)
        if q is None:
            return
        if q.timer is not None:
            q.timer.cancel()
        if claimed:
            self.stats["queries_claimed"] += 1
            return
        self.stats["queries_unclaimed"] += 1
        self._deliver(q.data, q.src, q.listener)

    def _deliver(self, data: bytes, src: Endpoint, listener: Any) -> None:
        self._handing = True
        try:
            self.core.on_message(data, src, listener)
        except Exception:
            log.exception("ipc: handling a handed-off message failed")
        finally:
            self._handing = False

    # -- TCP directory ----------------------------------------------------------------------------
    def connection_changed(self, key: tuple[str, int], is_open: bool) -> None:
        """Transport hook: this worker opened / closed a connection known by ``key``."""
        if is_open:
            if key in self._own_keys:
                return
            self._own_keys.add(key)
        else:
            if key not in self._own_keys:
                return
            self._own_keys.discard(key)
        data = _pack(b"O" if is_open else b"C", self.index, 0, _NO_LISTENER, "tcp", key[1],
                     key[0])
        for peer in self._others():
            self._send(peer, "m", data)

    def forward_tcp(self, dest: Endpoint, data: bytes) -> bool:
        """Transport hook: hand ``data`` to the worker holding a connection to ``dest``."""
        if self._handing:
            return False
        owner = self.tcp_owner.get((dest.host, dest.port))
        if owner is None or owner == self.index:
            return False
        if self._send(owner, "m", _pack(b"T", self.index, 0, _NO_LISTENER, dest.proto,
                                         dest.port, dest.host, data)):
            self.stats["tcp_out"] += 1
            return True
        self.tcp_owner.pop((dest.host, dest.port), None)
        return False

    # -- receiving --------------------------------------------------------------------------------
    def _listener_index(self, listener: Any) -> int:
        tr = self.transport
        if tr is None or listener is None:
            return _NO_LISTENER
        try:
            i = tr.listeners.index(listener)
        except ValueError:
            return _NO_LISTENER
        return i if i < _NO_LISTENER else _NO_LISTENER

    def _listener(self, i: int) -> Any:
        lst = self.transport.listeners if self.transport is not None else []
        if i < len(lst):
            return lst[i]
        return lst[0] if lst else None

    def _on_msg_readable(self) -> None:
        sock = self._msg_sock
        if sock is None:
            return
        for _ in range(_BATCH):
            try:
                data = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # pragma: no cover
                return
            try:
                self._dispatch(data)
            except Exception:
                log.exception("ipc: bad message from a peer")

    def _dispatch(self, data: bytes) -> None:
        size = _HDR.size
        if len(data) < size:
            return
        kind, sender, qid, li, pcode, port, tlen = _HDR.unpack_from(data)
        text = data[size : size + tlen].decode(errors="replace")
        payload = data[size + tlen :]
        proto = _PROTOS[pcode] if pcode < len(_PROTOS) else "udp"
        if kind == b"R" or kind == b"D":  # a message handed over whole: run it as received
            self.stats["responses_in" if kind == b"R" else "requests_in"] += 1
            self._deliver(payload, Endpoint(proto, text, port), self._listener(li))
        elif kind == b"Q":
            self.stats["queries_in"] += 1
            claimed = False
            self._handing = True
            try:
                claimed = bool(self.core.on_peer_request(payload, Endpoint(proto, text, port),
                                                         self._listener(li)))
            except Exception:
                log.exception("ipc: handling a peer's request failed")
            finally:
                self._handing = False
            self._send(sender, "m", _pack(b"A", self.index, qid, 1 if claimed else 0))
        elif kind == b"A":
            q = self._queries.get(qid)
            if q is None:
                return
            if li == 1:
                self._query_done(qid, True)
            else:
                q.remaining -= 1
                if q.remaining <= 0:
                    self._query_done(qid, False)
        elif kind == b"T":
            self.stats["tcp_in"] += 1
            self._handing = True
            try:
                self.transport.send(Endpoint(proto, text, port), payload)
            finally:
                self._handing = False
        elif kind == b"O":
            self.tcp_owner[(text, port)] = sender
        elif kind == b"C":
            if self.tcp_owner.get((text, port)) == sender:
                del self.tcp_owner[(text, port)]
        elif kind == b"H":
            for key in [k for k, w in self.tcp_owner.items() if w == sender]:
                del self.tcp_owner[key]
            for host, p in self._own_keys:
                self._send(sender, "m", _pack(b"O", self.index, 0, _NO_LISTENER, "tcp", p, host))
            for handler in self._on_start:
                try:
                    handler(sender)
                except Exception:
                    log.exception("ipc: sending state to restarted worker %d failed", sender)


class ReplicatedLocation(Location):
    """:class:`Location` kept equal on every worker through the ``location`` bus topic.

    The worker that changes a binding persists it (store, then memory, as ``Location`` does) and
    publishes it before returning -- so before the REGISTER is answered; the others apply it in
    memory only. Every read first drains the bus (:meth:`Peers.sync`). Expired bindings are swept
    from memory by every worker, from the store only by the one given ``sweeps_store``."""

    __slots__ = ("peers", "sweeps_store")

    def __init__(self, store: Any, peers: Peers, *, use_domain: bool = False,
                 sweeps_store: bool = False) -> None:
        super().__init__(store, use_domain=use_domain)
        self.peers = peers
        self.sweeps_store = sweeps_store
        peers.subscribe("location", self._on_remote_change)

    def lookup(self, aor: str, now: float) -> list[Binding]:
        self.peers.sync()
        return super().lookup(aor, now)

    def get(self, aor: str) -> list[Binding]:
        self.peers.sync()
        return super().get(aor)

    def dump(self, now: float | None = None) -> dict[str, list[dict[str, object]]]:
        self.peers.sync()
        return super().dump(now)

    def count(self) -> int:
        self.peers.sync()
        return super().count()

    def change(self, upserts: Sequence[Binding], deletes: Sequence[Binding]) -> None:
        if not upserts and not deletes:
            return
        super().change(upserts, deletes)
        self.peers.publish("location", ([b.to_row() for b in upserts],
                                        [b.to_row() for b in deletes]))

    def sweep(self, now: float) -> list[Binding]:
        self.peers.sync()
        if self.sweeps_store:
            return super().sweep(now)
        expired = self.due(now)
        if expired:
            self.apply_replicated((), expired)
        return expired

    def _on_remote_change(self, payload: Any) -> None:
        ups, dels = payload
        self.apply_replicated([Binding.from_row(r) for r in ups],
                              [Binding.from_row(r) for r in dels])
