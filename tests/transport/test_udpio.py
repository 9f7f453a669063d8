"""siprouter.transport._udpio (the UDP listener's system calls in C) over loopback sockets,
and the TransportManager's send queue behind it."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator

import pytest

from siprouter.sip.types import Endpoint, endpoint
from siprouter.transport import ListenSpec, TransportManager

udpio = pytest.importorskip("siprouter.transport._udpio")


def make_ep(host: str, port: int) -> Endpoint:
    return endpoint("udp", host, port)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server, client): a non-blocking server socket and a client, both on 127.0.0.1."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client.bind(("127.0.0.1", 0))
    client.settimeout(2)
    yield server, client
    server.close()
    client.close()


def test_recv_reads_batches_in_order_with_cached_endpoints(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    got: list[tuple[bytes, Endpoint]] = []
    cache: dict[object, Endpoint] = {}
    assert udpio.recv(server.fileno(), lambda d, e: got.append((d, e)), make_ep, cache) == 0
    for i in range(20):
        client.sendto(b"m%d" % i, server.getsockname())
    counts = []
    while (n := udpio.recv(server.fileno(), lambda d, e: got.append((d, e)), make_ep, cache)):
        counts.append(n)
        assert len(counts) < 10  # bounded
    assert counts == [8, 8, 4]
    assert [d for d, _ in got] == [b"m%d" % i for i in range(20)]
    src = Endpoint("udp", "127.0.0.1", client.getsockname()[1])
    assert all(e == src for _, e in got)
    assert len({id(e) for _, e in got}) == 1  # one Endpoint object, from the cache
    assert len(cache) == 1


def test_recv_keeps_large_and_empty_datagrams_whole(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    big = bytes(range(256)) * 250  # 64,000 bytes
    client.sendto(big, server.getsockname())
    client.sendto(b"", server.getsockname())
    got: list[bytes] = []
    assert udpio.recv(server.fileno(), lambda d, e: got.append(d), make_ep, {}) == 2
    assert got == [big, b""]


def test_recv_handler_exception_propagates(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    for i in range(3):
        client.sendto(b"x%d" % i, server.getsockname())
    seen: list[bytes] = []

    def handler(data: bytes, ep: Endpoint) -> None:
        seen.append(data)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        udpio.recv(server.fileno(), handler, make_ep, {})
    assert seen == [b"x0"]


def test_recv_and_send_errors() -> None:
    with pytest.raises(TypeError):
        udpio.recv("3", print, make_ep, {})
    with pytest.raises(TypeError):
        udpio.recv(3, print, make_ep, [])
    with pytest.raises(ValueError):
        udpio.recv(-1, print, make_ep, {})
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.fileno()
    s.close()
    with pytest.raises(OSError) as exc:
        udpio.recv(fd, print, make_ep, {})
    assert exc.value.errno == errno.EBADF
    assert udpio.send(fd, b"x", "127.0.0.1", 5060) == errno.EBADF
    with pytest.raises(TypeError):
        udpio.send(fd, "x", "127.0.0.1", 5060)
    with pytest.raises(ValueError):
        udpio.send(fd, b"x", "127.0.0.1", 70000)


def test_send_to_ip_literals_and_declines_names(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    port = client.getsockname()[1]
    assert udpio.send(server.fileno(), b"hello", "127.0.0.1", port) == 0
    data, src = client.recvfrom(100)
    assert data == b"hello" and src == server.getsockname()
    assert udpio.send(server.fileno(), b"x", "localhost", port) == -1
    assert udpio.send(server.fileno(), b"x", "fe80::1%lo", port) == -1
    # an IPv6 destination on an IPv4 socket: the kernel's errno, no exception
    assert udpio.send(server.fileno(), b"x", "::1", port) not in (0, -1)


def test_ipv6_source_endpoint() -> None:
    try:
        server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with server, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
        server.setblocking(False)
        client.bind(("::1", 0))
        client.sendto(b"six", server.getsockname()[:2])
        got: list[tuple[bytes, Endpoint]] = []
        cache: dict[object, Endpoint] = {}
        assert udpio.recv(server.fileno(), lambda d, e: got.append((d, e)), make_ep, cache) == 1
        assert got == [(b"six", Endpoint("udp", "::1", client.getsockname()[1]))]
        assert udpio.send(server.fileno(), b"back", "::1", client.getsockname()[1]) == 0
        client.settimeout(2)
        assert client.recv(10) == b"back"


def test_manager_send_queue_drains_when_writable() -> None:
    """A send the kernel had no room for waits in the listener's queue; later sends queue
    behind it (order kept) and all leave once the socket is writable."""

    async def main() -> None:
        mgr = TransportManager(lambda d, s, lst: None)
        await mgr.start([ListenSpec.parse("udp:127.0.0.1:0")])
        try:
            us = mgr._udp[mgr.listeners[0]]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.bind(("127.0.0.1", 0))
                c.setblocking(False)
                port = c.getsockname()[1]
                us._enqueue(b"first", "127.0.0.1", port)  # as after an EAGAIN
                mgr.send(Endpoint("udp", "127.0.0.1", port), b"second")
                got: list[bytes] = []
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 3
                while len(got) < 2 and loop.time() < deadline:
                    await asyncio.sleep(0.01)
                    try:
                        got.append(c.recv(100))
                    except BlockingIOError:
                        pass
                assert got == [b"first", b"second"]
                assert not us._queue
        finally:
            await mgr.stop()

    asyncio.run(main())
