"""SIPp and probes against two workers on one port: htable and pike state shared by the node.

The kernel spreads sources over the workers by address and port (SO_REUSEPORT); with
``udp_dispatch = "source"`` (the default, set here explicitly) the request stays there, so a
probe from a fixed local port always reaches the same worker (with "call-id" the Call-ID would
pick it); the script
(scripts/replicated_state.py) names the answering worker in ``X-Worker``. The checks: a value
stored in an htable through one worker is read through the other at once; a flood from
SIPp's per-call ports (``-t un``: spread over both workers) is caught about as soon as one
worker would catch it, and the ``ipban`` entry written by one worker silences the source on
both.

All traffic on 127.0.0.1; every wait bounded.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import LOOPBACK, SippRunner, SiprouterServer, response_status

pytestmark = pytest.mark.interop

SCRIPT = Path(__file__).parent / "scripts" / "replicated_state.py"
LIMIT = 16
CONFIG = f"""
[server]
udp_dispatch = "source"

[modules.htable]
htable = ["ipban=>size=8;autoexpire=30;", "shared=>size=8;"]

[modules.pike]
sampling_time_unit = 1
reqs_density_per_unit = {LIMIT}
remove_latency = 2
"""
_WORKER = re.compile(rb"^X-Worker: *(\d+)", re.MULTILINE | re.IGNORECASE)
_VALUE = re.compile(rb"^X-Ht-Value: *(.*?)\r$", re.MULTILINE | re.IGNORECASE)


def _server(tmp_path: Path, workers: int) -> SiprouterServer:
    cfg = tmp_path / "replicated.toml"
    cfg.write_text(CONFIG)
    return SiprouterServer(tmp_path, workers=workers,
                           extra=["--config", str(cfg), "--script", str(SCRIPT)])


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SiprouterServer]:
    srv = _server(tmp_path, 2)
    srv.start()
    try:
        yield srv
    finally:
        try:
            if srv.alive():
                srv.stop_cleanly()
        finally:
            print(srv.log_tail(40))


class Probe:
    """A UDP socket on a fixed local port: always the same worker."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = int(self.sock.getsockname()[1])
        self.n = 0

    def close(self) -> None:
        self.sock.close()

    def options(self, headers: str = "", timeout: float = 1.0) -> bytes | None:
        """Send one OPTIONS (repeated every 250 ms); the final answer, None if none came."""
        self.n += 1
        call_id = f"rs{self.port}-{self.n}"
        req = (
            f"OPTIONS sip:{LOOPBACK}:{self.server_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bKrs{self.port}x{self.n}\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag=p{self.n}\r\nTo: <sip:{LOOPBACK}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n{headers}"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                self.sock.sendto(req, (LOOPBACK, self.server_port))
                next_send = now + 0.25
            self.sock.settimeout(max(0.01, min(next_send, deadline) - now))
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            status = response_status(data)
            if status is not None and status >= 200 and call_id.encode() in data:
                return data
        return None

    def worker(self) -> int:
        data = self.options("X-Ht-Get: none\r\n")
        assert data is not None, "no answer to a probe"
        m = _WORKER.search(data)
        assert m is not None, data
        return int(m.group(1))


def probes_per_worker(port: int, workers: int) -> dict[int, Probe]:
    """One probe socket per worker (pid -> probe), found by trying local ports (bounded).

    The server is ready once one worker answers; a worker that joins the port group later
    moves sources between workers, so the mapping is checked again once all were seen."""
    deadline = time.monotonic() + 10
    found: dict[int, Probe] = {}
    while time.monotonic() < deadline:
        p = Probe(port)
        pid = p.worker()
        if pid in found:
            p.close()
        else:
            found[pid] = p
        if len(found) == workers:
            if all(p.worker() == pid for pid, p in found.items()):
                return found
            for p in found.values():
                p.close()
            found = {}
    for p in found.values():
        p.close()
    raise AssertionError(f"in 10 s the probes reached only workers {sorted(found)}")


def test_htable_value_stored_through_one_worker_is_read_through_the_other(
    node: SiprouterServer,
) -> None:
    probes = probes_per_worker(node.port, 2)
    try:
        (pid_a, a), (pid_b, b) = probes.items()
        for i in range(20):  # each read follows the other worker's 200 at once
            stored = a.options(f"X-Ht-Set: k{i}=v{i}\r\n")
            assert stored is not None and int(_WORKER.search(stored).group(1)) == pid_a  # type: ignore[union-attr]
            got = b.options(f"X-Ht-Get: k{i}\r\n")
            assert got is not None and int(_WORKER.search(got).group(1)) == pid_b  # type: ignore[union-attr]
            m = _VALUE.search(got)
            assert m is not None and m.group(1) == f"v{i}".encode(), got
            a, b, pid_a, pid_b = b, a, pid_b, pid_a
    finally:
        for p in probes.values():
            p.close()


def _start_of_unit() -> None:
    """Wait for the start of a one-second pike unit (the server uses the same monotonic
    clock), so a short flood falls into one unit."""
    frac = time.monotonic() % 1.0
    time.sleep(1.0 - frac + 0.02)


def test_flood_over_two_workers_is_banned_on_both(
    sipp: SippRunner, node: SiprouterServer,
) -> None:
    probes = probes_per_worker(node.port, 2)
    try:
        time.sleep(1.2)  # the probes' pike unit passes
        _start_of_unit()
        r = sipp.run("options_flood.xml", f"{LOOPBACK}:{node.port}", "-t", "un",
                     "-max_socket", "400", calls=200, rate=400, timeout=20)
        print(r.summary())
        assert r.successful >= 1, r.summary()
        assert r.failed >= 100, r.summary()
        # one worker alone answers LIMIT requests; two uncoordinated workers ~2 x LIMIT
        assert r.successful <= LIMIT + 4, r.summary()
        log = node.log_tail(400)
        assert "pike: blocking 127.0.0.1" in log
        # the ipban entry one worker wrote silences the source on both
        for pid, p in probes.items():
            assert p.options("X-Ht-Get: none\r\n", timeout=1.0) is None, \
                f"worker {pid} still answers a banned source"
    finally:
        for p in probes.values():
            p.close()
