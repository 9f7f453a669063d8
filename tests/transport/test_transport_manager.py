"""TransportManager over real loopback sockets, with the stdlib loop and with uvloop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from siprouter.sip.types import Endpoint
from siprouter.transport import Listener, ListenSpec, TransportManager, TransportSettings

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = _has_ipv6()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback on this host")

LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def runner(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as r:
            r.run(asyncio.wait_for(coro, 10))

    return runner


def msg(n: int, body: bytes = b"", method: str = "OPTIONS") -> bytes:
    return (
        f"{method} sip:u{n}@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK{n}\r\n"
        f"Call-ID: c{n}\r\nCSeq: {n} {method}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait (bounded) until ``cond()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, Endpoint, Listener]] = []

    def __call__(self, data: bytes, src: Endpoint, listener: Listener) -> None:
        self.got.append((data, src, listener))


async def started(
    specs: list[str],
    on_message: Callable[[bytes, Endpoint, Listener], None] | None = None,
    udp_syscalls: bool | None = None,
    **settings: Any,
) -> tuple[TransportManager, Sink]:
    sink = Sink()
    mgr = TransportManager(on_message or sink, TransportSettings(**settings))
    if udp_syscalls is not None:
        mgr.udp_syscalls = udp_syscalls
    await mgr.start([ListenSpec.parse(s) for s in specs])
    return mgr, sink


# UDP listeners read with the C module _udpio when it is built, and with asyncio's datagram
# transport otherwise (or when told so): both are tested
UDP_MODES = [pytest.param(False, id="asyncio-udp")] + (
    [pytest.param(True, id="udpio")] if TransportManager(Sink()).udp_syscalls else []
)


@pytest.fixture(params=UDP_MODES)
def udp_syscalls(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


# -- UDP -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
def test_udp_round_trip(
    run: Callable[[Coroutine[Any, Any, None]], None], udp_syscalls: bool, host: str
) -> None:
    async def main() -> None:
        lh = f"[{host}]" if ":" in host else host
        a, a_sink = await started([f"udp:{lh}:0"], udp_syscalls=udp_syscalls)
        b, b_sink = await started(
            [f"udp:{lh}:0", "udp:127.0.0.1:0"], udp_syscalls=udp_syscalls
        )
        try:
            la = a.listeners[0]
            assert la.port != 0 and la.advertise_port == la.port
            assert la.sock_family == (socket.AF_INET6 if ":" in host else socket.AF_INET)
            b.send(Endpoint("udp", host, la.port), msg(1))
            await until(lambda: len(a_sink.got) == 1)
            data, src, listener = a_sink.got[0]
            assert data == msg(1)
            assert listener is la
            # sent from b's listener of the right family
            assert src == Endpoint("udp", host, b.listeners[0].port)
            a.send(src, msg(2))
            await until(lambda: len(b_sink.got) == 1)
            assert b_sink.got[0][0] == msg(2)
            assert b_sink.got[0][1] == Endpoint("udp", host, la.port)
        finally:
            await a.stop()
            await b.stop()

    run(main())


def test_udp_listener_asks_for_a_large_receive_buffer(
    run: Callable[[Coroutine[Any, Any, None]], None], udp_syscalls: bool,
) -> None:
    """Bursts must not overflow the UDP receive queue (a lost datagram costs the peer a T1
    retransmission): the listener asks for 4 MB, which the kernel caps at rmem_max."""

    async def main() -> None:
        a, _ = await started(["udp:127.0.0.1:0"], udp_syscalls=udp_syscalls)
        try:
            sock = a._udp[a.listeners[0]].get_extra_info("socket")
            got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            try:
                with open("/proc/sys/net/core/rmem_max") as f:
                    rmem_max = int(f.read())
            except OSError:
                rmem_max = 4 * 1024 * 1024
            # Linux reports twice what was granted
            assert got >= 2 * min(4 * 1024 * 1024, rmem_max)
        finally:
            await a.stop()

    run(main())


def test_udp_drops_oversize_and_keepalives(
    run: Callable[[Coroutine[Any, Any, None]], None], udp_syscalls: bool,
) -> None:
    async def main() -> None:
        a, sink = await started(
            ["udp:127.0.0.1:0"], udp_syscalls=udp_syscalls, max_message_size=1000
        )
        refused: list[tuple[int, int]] = []

        def on_reject(data: bytes, src: Endpoint, lst: Any, status: int, reason: str) -> bytes:
            refused.append((len(data), status))
            return b"REFUSED"

        a.on_reject = on_reject
        port = a.listeners[0].port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.bind(("127.0.0.1", 0))
            c.settimeout(3)
            c.sendto(b"\r\n\r\n", ("127.0.0.1", port))
            c.sendto(b"\x00\x00\x00\x00", ("127.0.0.1", port))
            c.sendto(msg(1, b"x" * 2000), ("127.0.0.1", port))
            c.sendto(msg(2), ("127.0.0.1", port))
            await until(lambda: len(sink.got) >= 1)
            await asyncio.sleep(0.05)
            assert c.recv(100) == b"REFUSED"  # the oversize one was answered, not delivered
        assert [d for d, _, _ in sink.got] == [msg(2)]
        assert refused == [(len(msg(1, b"x" * 2000)), 413)]
        await a.stop()

    run(main())


def test_udp_send_without_listener_of_family_reports(
    run: Callable[[Coroutine[Any, Any, None]], None], udp_syscalls: bool,
) -> None:
    async def main() -> None:
        a, _ = await started(["udp:127.0.0.1:0"], udp_syscalls=udp_syscalls)
        errors: list[Exception] = []
        a.send(Endpoint("udp", "::1", 5060), msg(1), errors.append)
        assert errors == []  # never called from inside send()
        await until(lambda: len(errors) == 1)
        assert isinstance(errors[0], OSError)
        await a.stop()

    run(main())


# -- TCP -----------------------------------------------------------------------------------------


def test_tcp_framing_across_split_writes(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        a, sink = await started(["tcp:127.0.0.1:0"])
        port = a.listeners[0].port
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stream = msg(1, b"hello body") + msg(2) + msg(3, b"\r\n\r\n")
        for i in range(0, len(stream), 7):
            writer.write(stream[i : i + 7])
            await writer.drain()
            if i % 35 == 0:
                await asyncio.sleep(0.001)
        await until(lambda: len(sink.got) == 3)
        assert [d for d, _, _ in sink.got] == [msg(1, b"hello body"), msg(2), msg(3, b"\r\n\r\n")]
        local = writer.get_extra_info("sockname")
        assert sink.got[0][1] == Endpoint("tcp", "127.0.0.1", local[1])
        assert sink.got[0][2] is a.listeners[0]
        assert a.connection_count() == 1
        writer.close()
        await until(lambda: a.connection_count() == 0)
        await a.stop()

    run(main())


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
def test_tcp_reply_reuses_inbound_connection(
    run: Callable[[Coroutine[Any, Any, None]], None], host: str
) -> None:
    async def main() -> None:
        mgr_box: list[TransportManager] = []

        def echo(data: bytes, src: Endpoint, listener: Listener) -> None:
            mgr_box[0].send(src, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")

        lh = f"[{host}]" if ":" in host else host
        a, _ = await started([f"tcp:{lh}:0"], on_message=echo)
        mgr_box.append(a)
        reader, writer = await asyncio.open_connection(host, a.listeners[0].port)
        writer.write(msg(1))
        reply = await reader.readuntil(b"\r\n\r\n")
        assert reply.startswith(b"SIP/2.0 200 OK")
        assert a.connection_count() == 1  # no second connection was opened
        peer = writer.get_extra_info("sockname")
        assert a.has_connection(Endpoint("tcp", host, peer[1]))
        writer.close()
        await a.stop()

    run(main())


def test_tcp_manager_to_manager_queues_and_reuses(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        a, a_sink = await started(["tcp:127.0.0.1:0"])
        b, b_sink = await started(["tcp:127.0.0.1:0"])
        dest = Endpoint("tcp", "127.0.0.1", b.listeners[0].port)
        errors: list[Exception] = []
        # three sends before the connection is up: queued, delivered in order
        for n in range(3):
            a.send(dest, msg(n), errors.append)
        assert a.connection_count() == 1
        await until(lambda: len(b_sink.got) == 3)
        assert [d for d, _, _ in b_sink.got] == [msg(0), msg(1), msg(2)]
        # b answers to the source: over the same connection
        b.send(b_sink.got[0][1], msg(9))
        await until(lambda: len(a_sink.got) == 1)
        data, src, listener = a_sink.got[0]
        assert data == msg(9) and src == dest and listener is a.listeners[0]
        assert a.connection_count() == 1 and b.connection_count() == 1
        # a later send reuses the open outbound connection
        a.send(dest, msg(4))
        await until(lambda: len(b_sink.got) == 4)
        assert b_sink.got[3][1] == b_sink.got[0][1]
        assert errors == []
        await a.stop()
        await b.stop()
        assert a.connection_count() == 0

    run(main())


def test_tcp_connect_failure_calls_on_error(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        a, _ = await started(["tcp:127.0.0.1:0"])
        dest = Endpoint("tcp", "127.0.0.1", free_tcp_port())
        errors: list[Exception] = []
        a.send(dest, msg(1), errors.append)
        a.send(dest, msg(2), errors.append)
        await until(lambda: len(errors) == 2)
        assert all(isinstance(e, OSError) for e in errors)
        assert a.connection_count() == 0
        assert not a.has_connection(dest)
        await a.stop()

    run(main())


def test_garbage_peer_disconnected_other_peer_unaffected(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        a, sink = await started(["tcp:127.0.0.1:0"])
        port = a.listeners[0].port
        _r_good, w_good = await asyncio.open_connection("127.0.0.1", port)
        r_bad, w_bad = await asyncio.open_connection("127.0.0.1", port)
        w_good.write(msg(1))
        await until(lambda: len(sink.got) == 1)
        w_bad.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # no Content-Length: unframeable
        assert await asyncio.wait_for(r_bad.read(), 3) == b""  # closed by the server
        w_good.write(msg(2))
        await until(lambda: len(sink.got) == 2)
        assert sink.got[1][0] == msg(2)
        assert a.connection_count() == 1
        w_good.close()
        w_bad.close()
        await a.stop()

    run(main())


def test_tcp_oversize_message_disconnects(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        a, sink = await started(["tcp:127.0.0.1:0"], max_message_size=500)
        reader, writer = await asyncio.open_connection("127.0.0.1", a.listeners[0].port)
        a.on_reject = lambda data, src, lst, status, reason: f"{status}".encode()
        writer.write(msg(1) + msg(2, b"x" * 1000))
        assert await asyncio.wait_for(reader.read(), 3) == b"413"  # answered, then closed
        assert [d for d, _, _ in sink.got] == [msg(1)]  # the good message before it arrived
        writer.close()
        await a.stop()

    run(main())


def test_tcp_crlf_keepalive_answered(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        a, sink = await started(["tcp:127.0.0.1:0"])
        reader, writer = await asyncio.open_connection("127.0.0.1", a.listeners[0].port)
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 3) == b"\r\n"
        writer.write(msg(1))
        await until(lambda: len(sink.got) == 1)
        writer.close()
        await a.stop()

    run(main())


def test_tcp_connection_limit(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        a, sink = await started(["tcp:127.0.0.1:0"], tcp_max_connections=2)
        port = a.listeners[0].port
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await until(lambda: a.connection_count() == 2)
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(r3.read(), 3) == b""  # closed at accept
        assert a.rejected_connections == 1
        assert a.connection_count() == 2
        # outbound connections are refused too while at the limit
        errors: list[Exception] = []
        a.send(Endpoint("tcp", "127.0.0.1", free_tcp_port()), msg(1), errors.append)
        await until(lambda: len(errors) == 1)
        assert "limit" in str(errors[0])
        # the accepted ones still work
        conns[1][1].write(msg(5))
        await until(lambda: len(sink.got) == 1)
        for _, w in conns:
            w.close()
        w3.close()
        await a.stop()

    run(main())


def test_tcp_idle_timeout(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        a, sink = await started(["tcp:127.0.0.1:0"], tcp_idle_timeout=0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", a.listeners[0].port)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        # traffic keeps it open past one timeout period
        for n in range(3):
            await asyncio.sleep(0.1)
            writer.write(msg(n))
        await until(lambda: len(sink.got) == 3)
        assert a.connection_count() == 1
        assert await asyncio.wait_for(reader.read(), 3) == b""
        assert loop.time() - t0 >= 0.45  # 0.3 s of traffic + 0.2 s idle
        await until(lambda: a.connection_count() == 0)
        writer.close()
        await a.stop()

    run(main())


def test_add_alias(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        a, sink = await started(["tcp:127.0.0.1:0"])
        reader, writer = await asyncio.open_connection("127.0.0.1", a.listeners[0].port)
        writer.write(msg(1))
        await until(lambda: len(sink.got) == 1)
        src = sink.got[0][1]
        via_addr = Endpoint("tcp", "127.0.0.1", 5999)  # e.g. the Via sent-by of the peer
        assert a.add_alias(src, via_addr)
        assert not a.add_alias(Endpoint("tcp", "127.0.0.1", 1), via_addr)
        a.send(via_addr, msg(7))
        assert await asyncio.wait_for(reader.readexactly(len(msg(7))), 3) == msg(7)
        assert a.connection_count() == 1
        writer.close()
        await until(lambda: not a.has_connection(via_addr))
        await a.stop()

    run(main())


def test_stop_reports_pending_connects_and_closes(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        a, _ = await started(["tcp:127.0.0.1:0", "udp:127.0.0.1:0"])
        b, _ = await started(["tcp:127.0.0.1:0"])
        errors: list[Exception] = []
        reader, writer = await asyncio.open_connection("127.0.0.1", a.listeners[0].port)
        await until(lambda: a.connection_count() == 1)
        a.send(Endpoint("tcp", "127.0.0.1", b.listeners[0].port), msg(1), errors.append)
        await a.stop()
        assert a.connection_count() == 0 and a.listeners == []
        assert await asyncio.wait_for(reader.read(), 3) == b""
        # sending after stop is reported, not raised
        a.send(Endpoint("tcp", "127.0.0.1", b.listeners[0].port), msg(2), errors.append)
        await until(lambda: len(errors) >= 1)
        writer.close()
        await b.stop()

    run(main())


def test_start_failure_names_spec(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            mgr = TransportManager(Sink())
            with pytest.raises(OSError, match=f"tcp:127.0.0.1:{port}"):
                await mgr.start(
                    [ListenSpec.parse("udp:127.0.0.1:0"), ListenSpec.parse(f"tcp:127.0.0.1:{port}")]
                )
            assert mgr.listeners == []

    run(main())


def test_on_message_exception_does_not_kill_connection(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        seen: list[bytes] = []

        def flaky(data: bytes, src: Endpoint, listener: Listener) -> None:
            seen.append(data)
            if len(seen) == 1:
                raise RuntimeError("bug in the layer above")

        a, _ = await started(["tcp:127.0.0.1:0", "udp:127.0.0.1:0"], on_message=flaky)
        _reader, writer = await asyncio.open_connection("127.0.0.1", a.listeners[0].port)
        writer.write(msg(1))
        writer.write(msg(2))
        await until(lambda: len(seen) == 2)
        assert a.connection_count() == 1
        writer.close()
        await a.stop()

    run(main())


def test_send_on_closing_connection_opens_a_new_one(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        a, _ = await started(["tcp:127.0.0.1:0"])
        b, b_sink = await started(["tcp:127.0.0.1:0"])
        dest = Endpoint("tcp", "127.0.0.1", b.listeners[0].port)
        errors: list[Exception] = []
        a.send(dest, msg(1), errors.append)
        await until(lambda: len(b_sink.got) == 1)
        conn = a._table[(dest.host, dest.port)]
        assert conn.transport is not None
        conn.transport.close()  # closing; connection_lost not yet delivered
        a.send(dest, msg(2), errors.append)
        await until(lambda: len(b_sink.got) == 2)
        assert b_sink.got[1][0] == msg(2)
        assert b_sink.got[1][1] != b_sink.got[0][1]  # from a new connection
        await until(lambda: a.connection_count() == 1)
        assert errors == []
        await a.stop()
        await b.stop()

    run(main())
