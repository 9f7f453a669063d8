"""transport.steering: the reuseport program that delivers a response to its worker's socket.

The program is checked twice: by the in-process interpreter (``run_program``), over many
layouts, and by the kernel itself, on a real group of loopback sockets.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from siprouter.runtime.ipc import branch_prefix
from siprouter.runtime.workers import bind_udp_groups, close_groups
from siprouter.transport import steering
from siprouter.transport.spec import ListenSpec

HOSTPORT = "127.0.0.1:5060"


def response(branch: str, hostport: str = HOSTPORT, status: str = "180 Ringing",
             via_name: str = "Via: ", first: str = "") -> bytes:
    """A response as a callee sends it: our Via first (unless ``first`` goes before it)."""
    return (
        f"SIP/2.0 {status}\r\n{first}"
        f"{via_name}SIP/2.0/UDP {hostport};branch={branch}\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcaller;rport=5060\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:bob@example.com>;tag=b2\r\n"
        "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:bob@192.0.2.4>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def branch(worker: int) -> str:
    return f"{branch_prefix(worker)}4f1e2d.0"


PROGRAM = steering.response_program([HOSTPORT], 8)


@pytest.mark.parametrize("worker", [0, 1, 2, 7])
@pytest.mark.parametrize("status", ["100 Trying", "200 OK", "183 Session Progress",
                                    "486 Busy Here", "404 " + "n" * 90])
@pytest.mark.parametrize("via_name", ["Via: ", "v: "])
def test_our_branch_picks_its_worker(worker: int, status: str, via_name: str) -> None:
    data = response(branch(worker), status=status, via_name=via_name)
    assert steering.run_program(PROGRAM, data) == worker


@pytest.mark.parametrize("data", [
    response(branch(8)),  # a worker the group does not have
    response(branch(0x10)),
    response("z9hG4bKw00g1.0"),  # not a hex digit
    response("z9hG4bKw0A1.0"),  # upper case: not what we write
    response("z9hG4bK0001.0"),  # no worker tag (stateless branch)
    response(branch(1), hostport="127.0.0.1:5061"),  # another proxy's Via
    response(branch(1), hostport="127.0.0.10:5060"),
    response(branch(1), via_name="VIA: "),  # a layout the program does not know: hash
    response(branch(1), via_name="Via:"),
    response(branch(1), first="Call-ID: x\r\n"),  # Via not the first header
    response(branch(1), status="404 " + "n" * 120),  # status line beyond MAX_STATUS_LINE
    response(branch(1)).replace(b"SIP/2.0 180", b"SIP/3.0 180").replace(b"SIP/", b"XIP/", 1),
    response(branch(1)).replace(b"SIP/2.0 180 Ringing", b"INVITE sip:x SIP/2.0"),  # request
    b"\r\n\r\n",  # keep-alive
    b"",
    response(branch(1))[:150],  # too short to hold the Via: never a load past the end
])
def test_everything_else_is_left_to_the_hash(data: bytes) -> None:
    assert steering.run_program(PROGRAM, data) == steering.NO_SOCKET


def test_short_datagram_never_reads_past_its_end() -> None:
    """A classic BPF load past the end returns 0 (socket 0): the length check comes first."""
    full = response(branch(3))
    for cut in range(0, len(full)):
        got = steering.run_program(PROGRAM, full[:cut])
        assert got in (3, steering.NO_SOCKET), cut


def test_ipv6_and_several_addresses() -> None:
    prog = steering.response_program(["[2001:db8::1]:5060", "192.0.2.9:5080"], 4)
    assert steering.run_program(prog, response(branch(2), "[2001:db8::1]:5060")) == 2
    assert steering.run_program(prog, response(branch(3), "192.0.2.9:5080")) == 3
    assert steering.run_program(prog, response(branch(3), "192.0.2.9:5060")) == \
        steering.NO_SOCKET
    assert len(prog) < 4096


def test_program_needs_an_address() -> None:
    with pytest.raises(ValueError):
        steering.response_program([], 2)


@pytest.fixture
def group() -> Iterator[tuple[list[socket.socket], int]]:
    groups = bind_udp_groups(
        [ListenSpec.parse("tcp:127.0.0.1:0"), ListenSpec.parse("udp:127.0.0.1:0")], 4)
    assert list(groups) == [1]  # UDP listens only
    try:
        yield groups[1], groups[1][0].getsockname()[1]
    finally:
        close_groups(groups)


def _receiver(socks: list[socket.socket]) -> int:
    ready, _, _ = select.select(socks, [], [], 2.0)
    assert len(ready) == 1, ready
    ready[0].recv(65535)
    return socks.index(ready[0])


def test_kernel_delivers_each_response_to_its_worker(
    group: tuple[list[socket.socket], int],
) -> None:
    socks, port = group
    hostport = f"127.0.0.1:{port}"
    senders = []
    try:
        for _ in range(6):  # several sources: the hash alone would put each on one socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            senders.append(s)
        for s in senders:
            for worker in (0, 1, 2, 3, 2, 0):
                s.sendto(response(branch(worker), hostport), ("127.0.0.1", port))
                assert _receiver(socks) == worker
        # anything else goes where the hash puts it: the same socket for one source
        for s in senders:
            places = set()
            for data in (response(branch(9), hostport), b"OPTIONS sip:x SIP/2.0\r\n\r\n",
                         response(branch(1), "127.0.0.1:1")):
                s.sendto(data, ("127.0.0.1", port))
                places.add(_receiver(socks))
            assert len(places) == 1
    finally:
        for s in senders:
            s.close()


def test_without_steering_the_hash_decides() -> None:
    spec = ListenSpec("udp", "127.0.0.1", 0)
    groups = bind_udp_groups([spec], 3, steer=False)
    try:
        socks = groups[0]
        port = socks[0].getsockname()[1]
        assert {s.getsockname()[1] for s in socks} == {port}
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        with s:
            got = set()
            for worker in range(3):
                s.sendto(response(branch(worker), f"127.0.0.1:{port}"), ("127.0.0.1", port))
                got.add(_receiver(socks))
        assert len(got) == 1  # one source, one socket
    finally:
        close_groups(groups)


def test_kernel_steers_on_ipv6_too() -> None:
    try:
        groups = bind_udp_groups([ListenSpec.parse("udp:[::1]:0")], 2)
    except OSError as exc:  # pragma: no cover - a machine without IPv6 loopback
        pytest.skip(f"no IPv6 loopback: {exc}")
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        socks = groups[0]
        port = socks[0].getsockname()[1]
        for worker in (1, 0, 1, 1, 0):
            sender.sendto(response(branch(worker), f"[::1]:{port}"), ("::1", port))
            assert _receiver(socks) == worker
    finally:
        sender.close()
        close_groups(groups)


def test_bind_failure_names_the_listen_and_leaves_nothing_open() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))  # without SO_REUSEPORT: nobody can join
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"udp:127.0.0.1:{port}"):
            bind_udp_groups([ListenSpec("udp", "127.0.0.1", port)], 2)
    finally:
        taken.close()


def test_a_socket_that_leaves_gives_its_slot_to_the_last_one() -> None:
    """The kernel behaviour that makes the supervisor keep every socket open: close slot 0
    and bind a new socket, and the old last socket answers for slot 0."""
    groups = bind_udp_groups([ListenSpec("udp", "127.0.0.1", 0)], 3)
    socks = groups[0]
    port = socks[0].getsockname()[1]
    socks[0].close()
    newcomer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    newcomer.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    newcomer.bind(("127.0.0.1", port))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        order = [socks[1], socks[2], newcomer]
        got = []
        for worker in range(3):
            sender.sendto(response(branch(worker), f"127.0.0.1:{port}"), ("127.0.0.1", port))
            got.append(_receiver(order))
        assert got == [1, 0, 2]  # slot 0: the old last socket; slot 2: the newcomer
    finally:
        sender.close()
        newcomer.close()
        close_groups(groups)


def test_a_kernel_that_refuses_the_program_leaves_the_hash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(sock: socket.socket, program: steering.Program) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(steering, "attach", refuse)
    with caplog.at_level("WARNING", logger="siprouter.workers"):
        groups = bind_udp_groups([ListenSpec("udp", "127.0.0.1", 0)], 2)
    try:
        assert len(groups[0]) == 2  # the node still starts, on the hash alone
        assert "responses not steered to their workers" in caplog.text
    finally:
        close_groups(groups)
