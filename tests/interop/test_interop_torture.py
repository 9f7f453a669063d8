"""Over the wire: RFC 4475 / RFC 5118 torture messages and garbage against a running server.

Each vector from tests/vectors is sent byte-exact in one UDP datagram. The server answers a
UDP request at the address of the top Via: the source IP (``received``) and the Via's sent-by
port (5060 when absent), or the source port when ``rport`` is present (RFC 3261 18.2.2,
RFC 3581). So each vector is sent *from* 127.0.0.1:<that port>, and the answer comes
back on the same socket whichever rule the server applies. Answers are matched by Call-ID and
CSeq, because a final answer to an INVITE is retransmitted (we never ACK it).

What is asserted (RFC 4475 section 3, RFC 5118 section 4):
- invalid requests get the status the RFC names (400, 416, 420, 483, 505);
- valid requests get a final answer that is neither 400 nor any 5xx;
- requests the RFC lets an element either reject or accept liberally get a final answer below
  500;
- responses and messages without a start line or Via are only followed by the liveness check;
- RFC 5118's archive has bare LF line ends, two files without the empty line closing the
  header section and two wrong Content-Length values (tests/vectors/README.md): each is sent
  as the message it stands for (checked as above) and as archived (liveness, no 5xx);
- after every message the server still answers OPTIONS over UDP and TCP.
"""

from __future__ import annotations

import random
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from interop_support import (
    LOOPBACK,
    SiprouterServer,
    response_status,
)

pytestmark = pytest.mark.interop

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
FINAL_TIMEOUT = 2.0

VALID = "valid"  # final answer, not 400, not 5xx
LENIENT = "lenient"  # final answer below 500 (a 400 or a liberal accept)
NOT_A_REQUEST = "not-a-request"  # responses / no start line: only liveness

# name -> (kind, statuses the RFC expects for invalid requests)
EXPECTED: dict[str, tuple[str, frozenset[int]]] = {}


def _set(kind: str, names: str, statuses: tuple[int, ...] = ()) -> None:
    for name in names.split():
        EXPECTED[name] = (kind, frozenset(statuses))


# RFC 4475 3.1.1 valid parser tests, 3.2 transaction, 3.3 application, 3.4 backward compat.
_set(
    VALID,
    "wsinv intmeth esc01 escnull esc02 lwsdisp longreq dblreq semiuri transports mpart01 "
    "badbranch novelsc unksm2 invut regaut01 cparam01 cparam02 regescrt sdp01 inv2543",
)
# RFC 4475 3.1.2: invalid, "It is acceptable to reject ... an element may be liberal".
_set(LENIENT, "lwsstart trws escruri baddate regbadct")
# RFC 4475 3.1.2 / 3.3: invalid, with the status the RFC expects.
_set(
    "invalid",
    "badinv01 clerr ncl scalar02 quotbal ltgtruri lwsruri badaspec baddn mismatch01 mismatch02 "
    "insuf multi01 mcl01",
    (400,),
)
_set("invalid", "badvers", (505,))
_set("invalid", "unkscm", (416,))  # RFC 3261 16.3 step 2
_set("invalid", "bext01", (420,))  # Proxy-Require: RFC 3261 16.3 step 5
_set("invalid", "zeromf", (483,))  # RFC 3261 16.3 step 3
# Responses (a proxy drops them when the top Via is not its own) and a message without a
# SIP version or Via (cannot be answered).
_set(NOT_A_REQUEST, "unreason noreason scalarlg bigcode bcast test")
# RFC 5118 section 4.
_set(
    VALID,
    "ipv6-good port-ambiguous port-unambiguous via-received-param-no-delim ipv4-mapped-ipv6 "
    "ipv6-in-sdp mult-ip-in-header mult-ip-in-sdp ipv6-correct-abnf-2-colons",
)
_set(LENIENT, "via-received-param-with-delim ipv6-bug-abnf-3-colons")
_set("invalid", "ipv6-bad", (400,))


def _vector_files() -> list[Path]:
    return sorted(VECTORS.glob("rfc4475/*.dat")) + sorted(VECTORS.glob("rfc5118/*.dat"))


def test_every_vector_has_an_expectation() -> None:
    names = {p.stem for p in _vector_files()}
    assert len(names) == 62, f"expected the 50 + 12 vector files under {VECTORS}"
    assert names == set(EXPECTED), names ^ set(EXPECTED)


# --- what the message says about where its answer goes -----------------------------------

_HEADER_RE = re.compile(rb"^([A-Za-z][!-9;-~]*)[ \t]*:[ \t]*(.*)$")
_VIA_RE = re.compile(
    rb"SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\[[^\]]*\]|[^\s;:,\[]+)(?:\s*:\s*(\d+))?([^,]*)",
)


def _headers(raw: bytes) -> list[tuple[bytes, bytes]]:
    """Header lines (folding joined) up to the first empty line; line ends LF or CRLF."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    lines: list[bytes] = []
    for line in head.replace(b"\r\n", b"\n").split(b"\n")[1:]:
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += b" " + line.strip()
        else:
            lines.append(line)
    out = []
    for line in lines:
        m = _HEADER_RE.match(line)
        if m:
            out.append((m.group(1).lower(), m.group(2).strip()))
    return out


def _first(headers: list[tuple[bytes, bytes]], *names: bytes) -> bytes | None:
    for name, value in headers:
        if name in names:
            return value
    return None


def reply_port(raw: bytes) -> int | None:
    """The UDP port the answer goes to on 127.0.0.1; None = the source port (rport, no Via)."""
    via = _first(_headers(raw), b"via", b"v")
    if via is None:
        return None
    m = _VIA_RE.search(via)
    if m is None:
        return 5060
    _transport, _host, port, params = m.groups()
    if re.search(rb";\s*rport\b", params, re.IGNORECASE):
        return None
    # RFC 3261 18.2.2 (unreliable transport): "the port indicated in the sent-by value, or
    # port 5060 if none is specified explicitly" - whatever transport the Via names.
    return int(port) if port else 5060


def match_key(raw: bytes) -> tuple[bytes | None, bytes | None]:
    headers = _headers(raw)
    call_id = _first(headers, b"call-id", b"i")
    cseq = _first(headers, b"cseq")
    return call_id, (b" ".join(cseq.split()) if cseq else None)


# --- the server and the sockets ------------------------------------------------------------


class Sender:
    """One UDP socket per reply port, bound on 127.0.0.1 for the whole module."""

    def __init__(self) -> None:
        self.sockets: dict[int | None, socket.socket] = {}

    def socket_for(self, port: int | None) -> socket.socket:
        if port not in self.sockets:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((LOOPBACK, port or 0))
            except OSError as exc:
                s.close()
                pytest.skip(f"127.0.0.1:{port}/udp is in use ({exc}); the answer would go there")
            self.sockets[port] = s
        return self.sockets[port]

    def close(self) -> None:
        for s in self.sockets.values():
            s.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiprouterServer]:
    srv = SiprouterServer(tmp_path_factory.mktemp("torture"))
    srv.start()
    try:
        yield srv
    finally:
        try:
            if srv.alive():
                srv.stop_cleanly()
        finally:
            print(srv.log_tail(60))


@pytest.fixture(scope="module")
def sender() -> Iterator[Sender]:
    s = Sender()
    try:
        yield s
    finally:
        s.close()


def send_and_collect(
    sock: socket.socket, raw: bytes, server_port: int, wait_final: bool
) -> list[int]:
    """Send ``raw``; return the statuses of the answers that match it, up to the first final."""
    sock.setblocking(False)
    try:  # drop what earlier vectors left (retransmitted finals)
        while sock.recv(65535):
            pass
    except (BlockingIOError, ConnectionRefusedError):
        pass
    call_id, cseq = match_key(raw)
    sock.sendto(raw, (LOOPBACK, server_port))
    statuses: list[int] = []
    deadline = time.monotonic() + (FINAL_TIMEOUT if wait_final else 0.3)
    while (now := time.monotonic()) < deadline:
        sock.settimeout(deadline - now)
        try:
            data = sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            continue
        status = response_status(data)
        if status is None:
            continue
        got_call_id, got_cseq = match_key(data)
        if call_id is not None and got_call_id != call_id:
            continue
        if cseq is not None and got_cseq is not None and got_cseq != cseq:
            continue
        statuses.append(status)
        if status >= 200:
            break
    return statuses


ARCHIVED = "archived"  # RFC 5118 archive bytes as they are: liveness, and no 5xx if answered


def as_meant(raw: bytes) -> bytes:
    """The message an RFC 5118 archive file stands for (see tests/vectors/README.md): CRLF line
    ends, the empty line closing the header section, Content-Length equal to the body."""
    if b"\r\n" not in raw:
        raw = raw.replace(b"\n", b"\r\n")
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, body = raw.rstrip(b"\r\n"), b""
    head = re.sub(
        rb"(?im)^(content-length|l)[ \t]*:[ \t]*\d+[ \t]*$",
        lambda m: m.group(1) + b": " + str(len(body)).encode(),
        head,
    )
    return head + b"\r\n\r\n" + body


def _cases() -> list[Any]:
    cases: list[tuple[str, bytes, str, frozenset[int]]] = []
    for path in _vector_files():
        kind, expected = EXPECTED[path.stem]
        raw = path.read_bytes()
        if path.parent.name == "rfc5118":
            cases.append((f"rfc5118/{path.stem}", as_meant(raw), kind, expected))
            cases.append((f"rfc5118-archived/{path.stem}", raw, ARCHIVED, frozenset()))
        else:
            cases.append((f"rfc4475/{path.stem}", raw, kind, expected))
    return [pytest.param(*case, id=case[0]) for case in cases]


@pytest.mark.parametrize(("name", "raw", "kind", "expected"), _cases())
def test_torture_message(
    name: str,
    raw: bytes,
    kind: str,
    expected: frozenset[int],
    server: SiprouterServer,
    sender: Sender,
) -> None:
    sock = sender.socket_for(reply_port(raw))
    statuses = send_and_collect(
        sock, raw, server.port, wait_final=kind not in (NOT_A_REQUEST, ARCHIVED)
    )
    server.assert_alive()
    finals = [s for s in statuses if s >= 200]
    if kind == NOT_A_REQUEST:
        return
    if kind == ARCHIVED:
        assert all(s < 500 for s in finals), f"{name} answered {finals}"
        return
    assert finals, (
        f"{name}: no final answer within {FINAL_TIMEOUT}s (got {statuses})\n{server.log_tail(20)}"
    )
    final = finals[0]
    if kind == VALID:
        assert final != 400 and final < 500, f"{name}: valid message answered {final}"
    elif kind == LENIENT:
        assert final < 500, f"{name}: answered {final}"
    else:
        assert final in expected, f"{name}: answered {final}, RFC expects {sorted(expected)}"


def test_server_alive_after_all_vectors(server: SiprouterServer) -> None:
    server.assert_alive()


# --- garbage -------------------------------------------------------------------------------


def _garbage_datagrams(rng: random.Random) -> Iterator[bytes]:
    for _ in range(300):
        yield rng.randbytes(rng.randrange(0, 1500))
    sip_like = (
        b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKg\r\n"
        b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: g\r\nCSeq: 1 INVITE\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 10\r\n\r\n0123456789"
    )
    for _ in range(200):  # truncated, bit-flipped and spliced SIP
        data = bytearray(sip_like[: rng.randrange(1, len(sip_like) + 1)])
        for _ in range(rng.randrange(0, 8)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        yield bytes(data)
    yield b"\r\n\r\n"  # keep-alive
    yield b"\x00" * 65000
    yield b"SIP/2.0 200 OK\r\n\r\n"
    yield b"A" * 60000 + b"\r\n\r\n"


def test_garbage_over_udp_and_tcp(siprouter: SiprouterServer) -> None:
    rng = random.Random(4475)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        for i, data in enumerate(_garbage_datagrams(rng)):
            s.sendto(data, (LOOPBACK, siprouter.port))
            if i % 50 == 0:
                time.sleep(0.01)  # do not just overflow the socket buffer
    siprouter.assert_alive()

    # A TCP peer that sends garbage, one that sends a header that never ends, one that
    # opens and closes at once; then the server still answers (over UDP and TCP).
    for payload in (
        rng.randbytes(20000),
        b"OPTIONS sip:x SIP/2.0\r\nX: " + b"y" * 100000,
        b"",
        b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nContent-Length: -5\r\n\r\n" + rng.randbytes(100),
    ):
        with socket.create_connection((LOOPBACK, siprouter.port), timeout=2) as c:
            try:
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)
                c.settimeout(1.0)
                for _ in range(100):  # read what it answers until it closes (bounded)
                    if not c.recv(65535):
                        break
            except (TimeoutError, ConnectionResetError, BrokenPipeError):
                pass
    siprouter.assert_alive()
