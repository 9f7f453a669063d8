"""Oversized messages: refused with 413 over UDP and TCP, and the server keeps answering."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import LOOPBACK, SiprouterServer, options_ping

pytestmark = pytest.mark.interop

MAX = 3000


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[SiprouterServer]:
    cfg = tmp_path / "small.toml"
    cfg.write_text(f"[sip]\nmax_message_size = {MAX}\n")
    server = SiprouterServer(tmp_path, workers=1, extra=["--config", str(cfg)])
    server.start()
    try:
        yield server
    finally:
        server.stop_cleanly()


def big_invite(local_port: int, server_port: int, proto: str) -> bytes:
    body = b"v=0\r\n" + b"a=x-padding:" + b"x" * (2 * MAX) + b"\r\n"
    head = (
        f"INVITE sip:bob@{LOOPBACK}:{server_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{proto} {LOOPBACK}:{local_port};branch=z9hG4bKbig1;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@{LOOPBACK}>;tag=big\r\n"
        f"To: <sip:bob@{LOOPBACK}>\r\n"
        "Call-ID: oversize-1@test\r\n"
        "CSeq: 1 INVITE\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def test_oversize_udp_answered_413(small_server: SiprouterServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        s.settimeout(5)
        s.sendto(big_invite(s.getsockname()[1], small_server.port, "UDP"),
                 (LOOPBACK, small_server.port))
        data = s.recv(65535)
    assert data.startswith(b"SIP/2.0 413 ")
    assert b"Call-ID: oversize-1@test" in data
    assert options_ping(small_server.port) == 200


def test_oversize_tcp_answered_413_then_closed(small_server: SiprouterServer) -> None:
    with socket.create_connection((LOOPBACK, small_server.port), timeout=5) as c:
        c.sendall(big_invite(c.getsockname()[1], small_server.port, "TCP"))
        got = b""
        while True:
            chunk = c.recv(65535)
            if not chunk:
                break
            got += chunk
    assert got.startswith(b"SIP/2.0 413 ")
    assert options_ping(small_server.port, "tcp") == 200
    assert options_ping(small_server.port) == 200
