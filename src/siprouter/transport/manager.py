"""asyncio transport adapters: UDP and TCP listeners, outbound TCP connections. Bytes in, bytes out.

Theory of operation
-------------------
``TransportManager`` opens one socket per :class:`ListenSpec` and hands every whole SIP message
to ``on_message(data, src, listener)``. It knows nothing about SIP beyond stream framing.

UDP: one socket per listener, watched with ``loop.add_reader``. A datagram is one message;
datagrams larger than ``max_message_size`` and keep-alive datagrams (CRLFs, NULs) are dropped.
Sending uses the UDP listener of the destination's address family (or the one given as
``via``), so replies leave from the socket a request came in on and NAT bindings stay valid.
The system calls are made by the C module ``_udpio`` (built with the compiled hot path): one
``recvmmsg`` reads up to 8 waiting datagrams, and the source endpoint of each comes from a
per-listener cache instead of being formatted anew (about a third of asyncio's per-datagram
cost). A send the kernel has no room for (EAGAIN, ENOBUFS) waits in a bounded queue until the
socket is writable. Without ``_udpio`` (a pure Python install, or ``udp_syscalls = False``)
each listener is an ``asyncio.DatagramProtocol`` with the same checks.

TCP: one ``asyncio.Protocol`` object per connection, inbound (accepted) or outbound (opened by
``send``), each with a :class:`~siprouter.sip.framing.StreamFramer`. Connections live in a table
keyed by the remote ``(host, port)``: for an inbound connection that is the peer's source
address (its *alias*), so requests and responses for that peer reuse it instead of opening a new
connection (RFC 3261 §18.2.2, RFC 5923 in spirit). ``add_alias`` maps one more address (e.g. a
Via sent-by) onto an open connection. Sends issued while an outbound connection is still being
set up are queued and written once it is connected; when connecting fails, each queued send's
``on_error`` is called. A connection that is lost with an error while written data was still in
the user-space write buffer reports that data's ``on_error`` too (data already handed to the
kernel cannot be tracked; that is the reliability of TCP itself, with the transaction layer's
timers as the safety net).

A peer whose stream cannot be framed (``ParseError``: garbage, missing Content-Length, a message
larger than ``max_message_size``) is disconnected; other connections are not affected. We close
rather than answer 400/513: this layer does not build SIP responses, the bytes that failed to
frame may not hold the Via/From/To/Call-ID/CSeq a response must copy, and once framing is lost no
later byte of that stream can be trusted (Kamailio closes the connection on such read errors too).

Each connection has one idle timer: activity only stamps ``last_activity``; when the timer fires
early it re-arms for the remainder, so traffic costs no timer churn. Beyond
``tcp_max_connections`` inbound connections are closed at accept and outbound ones refused.

Double-CRLF keep-alive pings on a stream (RFC 5626 §3.5.1) are answered with a single CRLF pong.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Final, cast

from ..native import native
from ..sip.framing import StreamFramer
from ..sip.message import ParseError
from ..sip.types import Endpoint, endpoint
from .spec import Listener, ListenSpec, TransportSettings

__all__ = ["OnError", "OnMessage", "TransportManager", "open_listen_socket"]

log = logging.getLogger(__name__)

OnMessage = Callable[[bytes, Endpoint, Listener], None]
OnError = Callable[[Exception], None]

# Datagrams shorter than this that hold only these bytes are NAT keep-alives, not SIP.
_KEEPALIVE_MAX: Final = 32
_KEEPALIVE_BYTES: Final = b"\r\n\x00 \t"


def _family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _report(cb: OnError | None, exc: Exception, what: str) -> None:
    """Hand a send failure to its callback (or the log); a failing callback is logged."""
    if cb is None:
        log.warning("%s: %s", what, exc)
        return
    try:
        cb(exc)
    except Exception:
        log.exception("on_error callback failed (%s)", what)


# UDP receive buffer asked for on every UDP listener (Kamailio probes up to its "maxbuffer")
_UDP_RCVBUF: Final = 4 * 1024 * 1024

# The UDP system calls in C (siprouter/transport/_udpio.c), built with the compiled hot path.
_UdpRecv = Callable[
    [int, Callable[[bytes, Endpoint], None], Callable[[str, int], Endpoint],
     dict[object, Endpoint]],
    int,
]
_UdpSend = Callable[[int, bytes, str, int], int]


_udp_recv: Final[_UdpRecv | None] = native("siprouter.transport._udpio", "recv")
_udp_send: Final[_UdpSend | None] = native("siprouter.transport._udpio", "send")

# sends that found no room in the kernel wait for the socket to become writable, up to this many
_UDP_QUEUE_MAX: Final = 10_000
_UDP_NO_ROOM: Final = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


def _udp_endpoint(host: str, port: int) -> Endpoint:
    return endpoint("udp", host, port)


_UDP_ENDPOINT: Final = _udp_endpoint  # a C static (a function named as a value is a lookup)

def open_listen_socket(spec: ListenSpec, reuse_port: bool) -> socket.socket:
    """A non-blocking socket bound for ``spec``; raises OSError naming the spec."""
    family = spec.family
    kind = socket.SOCK_DGRAM if spec.proto == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            # keep IPv6 sockets IPv6-only so [::] and 0.0.0.0 can share a port
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # several worker processes on one port; the kernel picks the socket by a hash
            # of the source address (and port), so one peer stays on one worker
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_DGRAM:
            # room for bursts: a datagram that finds the receive queue full is lost, and
            # the peer retransmits only after T1 (the kernel caps this at rmem_max)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
            except OSError:
                pass
        sock.bind((spec.host, spec.port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {spec}: {exc.strerror}") from exc
    return sock


class _UdpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("_listener", "_max", "_mgr", "_on_message", "_transport")

    def __init__(
        self, listener: Listener, on_message: OnMessage, max_size: int,
        mgr: TransportManager | None = None,
    ) -> None:
        self._listener = listener
        self._on_message = on_message
        self._max = max_size
        self._mgr = mgr
        self._transport: asyncio.DatagramTransport | _UdpSocket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.DatagramTransport", transport)

    def attach(self, sock: _UdpSocket) -> None:
        """Answer oversized datagrams through ``sock`` (the _udpio listener)."""
        self._transport = sock

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host = addr[0]
        port = addr[1]
        assert isinstance(host, str) and isinstance(port, int)
        self.datagram(data, endpoint("udp", host, port))

    def datagram(self, data: bytes, src: Endpoint) -> None:
        """One datagram from ``src``: checked, then handed on. Never raises an Exception."""
        n = len(data)
        if n > self._max:
            log.info("udp: refused %d-byte datagram from %s:%d (over max_message_size)",
                     n, src.host, src.port)
            mgr = self._mgr
            reject = mgr.on_reject if mgr is not None else None
            if reject is not None and self._transport is not None:
                try:
                    answer = reject(data[:8192], src, self._listener,
                                    413, "Request Entity Too Large")
                    if answer:
                        self._transport.sendto(answer, (src.host, src.port))
                except Exception:
                    log.exception("udp: answering an oversized datagram failed")
            return
        if n < _KEEPALIVE_MAX and not data.strip(_KEEPALIVE_BYTES):
            return
        try:
            self._on_message(data, src, self._listener)
        except Exception:
            log.exception("udp: on_message failed for a datagram from %s:%d",
                          src.host, src.port)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors and failed sendto calls on an unconnected socket: nothing to retry here,
        # the transaction layer's timers cover lost datagrams.
        log.debug("udp %r: %s", self._listener, exc)


class _UdpSocket:
    """A UDP listener's socket read and written with ``_udpio`` (see the module docstring);
    the two methods of ``asyncio.DatagramTransport`` the manager uses."""

    __slots__ = ("_cache", "_fd", "_loop", "_proto", "_queue", "_sock", "dropped")

    def __init__(
        self, sock: socket.socket, proto: _UdpProtocol, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._proto = proto
        self._loop = loop
        self._cache: dict[object, Endpoint] = {}  # source address -> Endpoint
        self._queue: deque[tuple[bytes, str, int]] = deque()
        self.dropped = 0  # sends dropped because the queue was full
        proto.attach(self)
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        assert _udp_recv is not None
        try:
            _udp_recv(self._fd, self._proto.datagram, _UDP_ENDPOINT, self._cache)
        except OSError as exc:
            self._proto.error_received(exc)

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname()
        return default

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        host, port = addr
        if self._queue or not self._send(data, host, port):
            self._enqueue(data, host, port)  # behind the queued ones, or no room in the kernel

    def _send(self, data: bytes, host: str, port: int) -> bool:
        """One datagram to the kernel; False when it had no room (the caller queues it). Any
        other failure goes to the protocol's error_received."""
        assert _udp_send is not None
        rc = _udp_send(self._fd, data, host, port)
        if rc == 0:
            return True
        if rc == -1:  # not an address inet_pton reads (an IPv6 zone, say): the socket module
            try:
                self._sock.sendto(data, (host, port))
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                self._proto.error_received(exc)
            return True
        if rc in _UDP_NO_ROOM:
            return False
        self._proto.error_received(OSError(rc, f"sendto {host}:{port}: {os.strerror(rc)}"))
        return True

    def _enqueue(self, data: bytes, host: str, port: int) -> None:
        if len(self._queue) >= _UDP_QUEUE_MAX:
            self.dropped += 1
            log.warning("udp: send queue full (%d datagrams), dropped one to %s:%d",
                        _UDP_QUEUE_MAX, host, port)
            return
        if not self._queue:
            self._loop.add_writer(self._fd, self._writable)
        self._queue.append((data, host, port))

    def _writable(self) -> None:
        queue = self._queue
        while queue:
            data, host, port = queue[0]
            if not self._send(data, host, port):
                return  # still no room: wait for the next writable event
            queue.popleft()
        self._loop.remove_writer(self._fd)

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        if self._queue:
            self._loop.remove_writer(self._fd)
            self._queue.clear()
        self._fd = -1
        self._sock.close()


class _TcpConnection(asyncio.Protocol):
    """One TCP connection, inbound or outbound."""

    __slots__ = (
        "_mgr",
        "_timer",
        "closed",
        "framer",
        "keys",
        "last_activity",
        "listener",
        "outbound",
        "pending",
        "remote",
        "transport",
        "unflushed",
    )

    def __init__(
        self,
        mgr: TransportManager,
        listener: Listener,
        remote: Endpoint | None,
        outbound: bool,
    ) -> None:
        self._mgr = mgr
        self.listener = listener
        self.remote = remote
        self.outbound = outbound
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(mgr.settings.max_message_size)
        # sends waiting for the outbound connection to be set up
        self.pending: list[tuple[bytes, OnError | None]] = []
        # callbacks of data still in the user-space write buffer
        self.unflushed: list[OnError] = []
        self.last_activity = mgr.loop.time()
        self.closed = False
        self.keys: list[tuple[str, int]] = []
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, hence a cast
        self.transport = transport = cast("asyncio.Transport", transport)
        mgr = self._mgr
        if self.outbound:
            if self.closed:  # stopped or timed out while connecting
                transport.abort()
                return
            pending, self.pending = self.pending, []
            for data, cb in pending:
                self.send(data, cb)
        else:
            peer = transport.get_extra_info("peername")
            if mgr.closing or peer is None:
                self.closed = True
                transport.abort()
                return
            if len(mgr._conns) >= mgr.settings.tcp_max_connections:
                mgr.rejected_connections += 1
                log.debug("tcp: connection limit reached, closing %s", peer)
                self.closed = True
                transport.abort()
                return
            self.remote = Endpoint("tcp", peer[0], peer[1])
            mgr._register(self, (peer[0], peer[1]))
        self.last_activity = mgr.loop.time()
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = self._mgr.loop.time()
        framer = self.framer
        try:
            msgs = framer.feed(data)
        except ParseError as exc:
            self._drop_peer(exc)
            return
        if framer.pings and self.transport is not None:
            self.transport.write(b"\r\n" * framer.pings)  # RFC 5626 §4.4.1 pong
        if msgs:
            on_message = self._mgr.on_message
            remote = self.remote
            assert remote is not None
            for msg in msgs:
                try:
                    on_message(msg, remote, self.listener)
                except Exception:
                    log.exception("tcp: on_message failed for a message from %s", remote)
        if framer.pending_error is not None:
            self._drop_peer(framer.pending_error)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._mgr._unregister(self)
        if was_closed:
            return
        err: Exception = exc if exc is not None else ConnectionResetError("connection closed")
        if self.pending:
            pending, self.pending = self.pending, []
            for _data, cb in pending:
                _report(cb, err, f"tcp send to {self.remote}")
        if exc is not None and self.unflushed:
            unflushed, self.unflushed = self.unflushed, []
            for cb in unflushed:
                _report(cb, err, f"tcp send to {self.remote}")

    # -- used by the manager -------------------------------------------------------------------

    def send(self, data: bytes, on_error: OnError | None) -> None:
        t = self.transport
        if t is None:
            self.pending.append((data, on_error))
            return
        if self.unflushed and t.get_write_buffer_size() == 0:
            self.unflushed.clear()
        t.write(data)
        self.last_activity = self._mgr.loop.time()
        if on_error is not None and t.get_write_buffer_size():
            self.unflushed.append(on_error)

    def connect_failed(self, exc: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        self._mgr._unregister(self)
        log.info("tcp: connect to %s failed: %s", self.remote, exc)
        pending, self.pending = self.pending, []
        for _data, cb in pending:
            _report(cb, exc, f"tcp connect to {self.remote}")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        elif not self.closed:
            self.connect_failed(ConnectionAbortedError("transport stopped"))

    def _drop_peer(self, exc: ParseError) -> None:
        log.info("tcp: closing connection from %s: cannot frame stream (%s)", self.remote, exc)
        self.pending.clear()
        transport = self.transport
        if transport is not None:
            reject = self._mgr.on_reject
            if reject is not None and exc.status and self.remote is not None:
                # the answer owed (413 too large, 400 bad Content-Length) goes out before
                # the close; the stream cannot be trusted after a framing error
                answer = reject(self.framer.head(8192), self.remote, self.listener,
                                exc.status, exc.reason)
                if answer:
                    transport.write(answer)
            transport.close()

    def _arm_idle(self) -> None:
        mgr = self._mgr
        self._timer = mgr.loop.call_at(
            self.last_activity + mgr.settings.tcp_idle_timeout, self._idle_check
        )

    def _idle_check(self) -> None:
        self._timer = None
        if self.closed or self.transport is None:
            return
        if self._mgr.loop.time() >= self.last_activity + self._mgr.settings.tcp_idle_timeout:
            log.debug("tcp: closing idle connection to %s", self.remote)
            self.transport.close()
        else:
            self._arm_idle()


class TransportManager:
    """All listeners and connections of one process. See the module docstring."""

    def __init__(self, on_message: OnMessage, settings: TransportSettings | None = None) -> None:
        self.on_message = on_message
        self.settings = settings if settings is not None else TransportSettings()
        self.listeners: list[Listener] = []
        #: inbound connections closed at accept because of the connection limit
        self.rejected_connections = 0
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: dict[Listener, asyncio.DatagramTransport | _UdpSocket] = {}
        #: read and write UDP sockets with the C module _udpio when it is built (False: with
        #: asyncio's datagram transport); read when a listener opens
        self.udp_syscalls = _udp_recv is not None
        self._servers: list[asyncio.AbstractServer] = []
        self._table: dict[tuple[str, int], _TcpConnection] = {}
        self._conns: set[_TcpConnection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        #: worker processes: called with (host, port), True/False when this process starts /
        #: stops being reachable through a connection known by that key (the TCP directory)
        self.on_connection: Callable[[tuple[str, int], bool], None] | None = None
        #: worker processes: asked before opening a TCP connection; True when it handed the
        #: bytes to the process that holds a connection to ``dest`` (its errors are not reported)
        self.forward: Callable[[Endpoint, bytes], bool] | None = None
        #: asked for the answer to a message refused before it reached ``on_message`` (over
        #: max_message_size, or a stream that cannot be framed): called with the start of its
        #: bytes, the peer, the listener, a status and a reason; returns bytes to send back
        #: first (or None). The transport itself knows nothing of SIP responses.
        self.on_reject: Callable[[bytes, Endpoint, Listener, int, str], bytes | None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(
        self, listens: list[ListenSpec], bound: dict[int, socket.socket] | None = None,
    ) -> None:
        """Open a socket per spec; raises OSError naming the spec that could not be opened.

        ``bound`` maps positions in ``listens`` to sockets already bound for them (worker
        processes get their UDP sockets from the supervisor, runtime.workers)."""
        self._loop = asyncio.get_running_loop()
        self.closing = False
        try:
            for i, spec in enumerate(listens):
                await self._listen(spec, bound.get(i) if bound is not None else None)
        except BaseException:
            await self.stop()
            raise

    async def _listen(self, spec: ListenSpec, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = open_listen_socket(spec, self.settings.reuse_port)
        listener = Listener.bound(spec, int(sock.getsockname()[1]))
        if spec.proto == "udp":
            max_size = self.settings.max_message_size
            if self.udp_syscalls and _udp_recv is not None:
                proto = _UdpProtocol(listener, self.on_message, max_size, self)
                try:
                    self._udp[listener] = _UdpSocket(sock, proto, self.loop)
                except BaseException:
                    sock.close()
                    raise
            else:
                transport, _ = await self.loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(listener, self.on_message, max_size, self), sock=sock
                )
                self._udp[listener] = transport
        else:
            server = await self.loop.create_server(
                lambda: _TcpConnection(self, listener, None, False), sock=sock, backlog=1024
            )
            self._servers.append(server)
        self.listeners.append(listener)
        log.info("listening on %r", listener)

    async def stop(self) -> None:
        """Close every listener and connection."""
        self.closing = True
        for task in list(self._connecting):
            task.cancel()
        for transport in self._udp.values():
            transport.close()
        self._udp.clear()
        for server in self._servers:
            server.close()
        for conn in list(self._conns):
            conn.close()
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self.listeners.clear()
        await asyncio.sleep(0)  # let connection_lost callbacks run

    # -- sending -------------------------------------------------------------------------------

    def send(
        self,
        dest: Endpoint,
        data: bytes,
        on_error: OnError | None = None,
        via: Listener | None = None,
    ) -> None:
        """Send one message. ``dest.host`` must be an IP literal (resolution is done above).

        UDP: ``sendto`` from ``via`` or the UDP listener of the destination's family.
        TCP: reuse the connection to ``(dest.host, dest.port)`` (inbound or outbound), else open
        one. Failures go to ``on_error`` (never raised, never called from inside ``send``).
        """
        proto = dest.proto
        if proto == "udp":
            listener = via if via is not None and via.proto == "udp" else None
            if listener is None:
                listener = self._pick_listener("udp", _family_of(dest.host), strict=True)
            transport = self._udp.get(listener) if listener is not None else None
            if transport is None:
                self._fail(on_error, OSError(f"no UDP listener to send to {dest.hostport()}"))
                return
            transport.sendto(data, (dest.host, dest.port))
        elif proto == "tcp":
            key = (dest.host, dest.port)
            conn = self._table.get(key)
            if conn is None or (conn.transport is not None and conn.transport.is_closing()):
                # none, or closed (idle, bad peer, EOF) with connection_lost still to come
                if conn is None and self.forward is not None and self.forward(dest, data):
                    return  # another worker holds a connection to dest and sends it
                conn = self._open(dest, via, on_error)
                if conn is None:
                    return
            conn.send(data, on_error)
        else:
            self._fail(on_error, ValueError(f"unsupported transport {proto!r}"))

    def add_alias(self, existing: Endpoint, alias: Endpoint) -> bool:
        """Make sends to ``alias`` use the open connection to ``existing``; False if none."""
        conn = self._table.get((existing.host, existing.port))
        if conn is None or conn.closed:
            return False
        self._register(conn, (alias.host, alias.port))
        return True

    def connection_count(self) -> int:
        """Open (or opening) TCP connections."""
        return len(self._conns)

    def has_connection(self, dest: Endpoint) -> bool:
        return (dest.host, dest.port) in self._table

    # -- internals -----------------------------------------------------------------------------

    def _fail(self, cb: OnError | None, exc: Exception) -> None:
        self.loop.call_soon(_report, cb, exc, "send")

    def _pick_listener(
        self, proto: str, family: socket.AddressFamily, strict: bool = False
    ) -> Listener | None:
        fallback: Listener | None = None
        for lst in self.listeners:
            if lst.sock_family == family:
                if lst.proto == proto:
                    return lst
                if fallback is None and not strict:
                    fallback = lst
        if strict:
            return None
        if fallback is not None:
            return fallback
        for lst in self.listeners:
            if lst.proto == proto:
                return lst
        return self.listeners[0] if self.listeners else None

    def _open(
        self, dest: Endpoint, via: Listener | None, on_error: OnError | None
    ) -> _TcpConnection | None:
        if self.closing:
            self._fail(on_error, ConnectionAbortedError("transport stopped"))
            return None
        if len(self._conns) >= self.settings.tcp_max_connections:
            self._fail(on_error, OSError(f"tcp connection limit reached, not connecting to {dest}"))
            return None
        family = _family_of(dest.host)
        listener = via if via is not None else self._pick_listener("tcp", family)
        if listener is None:
            self._fail(on_error, OSError("no listener: start() the transport first"))
            return None
        conn = _TcpConnection(self, listener, dest, True)
        self._register(conn, (dest.host, dest.port))
        task = self.loop.create_task(self._connect(conn, dest, family))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return conn

    async def _connect(
        self, conn: _TcpConnection, dest: Endpoint, family: socket.AddressFamily
    ) -> None:
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: conn, dest.host, dest.port, family=family),
                self.settings.tcp_connect_timeout,
            )
        except asyncio.CancelledError:
            conn.connect_failed(ConnectionAbortedError("transport stopped"))
            raise
        except TimeoutError:
            conn.connect_failed(TimeoutError(f"connect to {dest.hostport()} timed out"))
        except Exception as exc:
            conn.connect_failed(exc)

    def _register(self, conn: _TcpConnection, key: tuple[str, int]) -> None:
        old = self._table.get(key)
        if old is not None and old is not conn:
            old.keys.remove(key)
        self._table[key] = conn
        conn.keys.append(key)
        self._conns.add(conn)
        if self.on_connection is not None and old is None:
            self.on_connection(key, True)

    def _unregister(self, conn: _TcpConnection) -> None:
        for key in conn.keys:
            if self._table.get(key) is conn:
                del self._table[key]
                if self.on_connection is not None:
                    self.on_connection(key, False)
        conn.keys.clear()
        self._conns.discard(conn)
