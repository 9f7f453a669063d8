"""SIPp against a server running the request-initial checks of Kamailio's basic config
(scripts/reqinit_checks.py): OPTIONS keepalive, Max-Forwards 0 -> 483, sanity failures
answered as Kamailio does, pike + ipban (a flooding source gets nothing for the ban time,
then is served again), and NAT keep-alive OPTIONS pings to a flagged binding.

All traffic on 127.0.0.1; every wait bounded.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import (
    LOOPBACK,
    SippRunner,
    SiprouterServer,
    options_ping,
    response_status,
)

pytestmark = pytest.mark.interop

SCRIPT = Path(__file__).parent / "scripts" / "reqinit_checks.py"
BAN_SECONDS = 3

CONFIG = f"""
[modules.htable]
htable = ["ipban=>size=8;autoexpire={BAN_SECONDS};"]

[modules.pike]
sampling_time_unit = 1
reqs_density_per_unit = 16
remove_latency = 2

[modules.nathelper]
natping_interval = 1
ping_nated_only = 1
nat_bflag = 6
sipping_bflag = 7
sipping_from = "sip:pinger@127.0.0.1"
"""


class ReqinitServer(SiprouterServer):
    def command(self) -> list[str]:
        cfg = self.workdir / "reqinit.toml"
        cfg.write_text(CONFIG)
        return [*super().command(), "--config", str(cfg), "--script", str(SCRIPT),
                "--workers", "1"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ReqinitServer]:
    srv = ReqinitServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        try:
            if srv.alive():
                srv.stop_cleanly()
        finally:
            print(srv.log_tail(40))


def test_options_to_the_server_is_answered_200_keepalive(
    sipp: SippRunner, server: ReqinitServer,
) -> None:
    r = sipp.run("options_keepalive.xml", f"{LOOPBACK}:{server.port}", calls=3, rate=10,
                 timeout=15)
    assert (r.returncode, r.successful, r.failed) == (0, 3, 0), r.summary()


def test_max_forwards_zero_gets_483(sipp: SippRunner, server: ReqinitServer) -> None:
    r = sipp.run("maxfwd_zero.xml", f"{LOOPBACK}:{server.port}", calls=2, rate=10, timeout=15)
    assert (r.returncode, r.successful, r.failed) == (0, 2, 0), r.summary()


def test_sanity_failure_answered_as_kamailio(sipp: SippRunner, server: ReqinitServer) -> None:
    r = sipp.run("sanity_expires.xml", f"{LOOPBACK}:{server.port}", calls=2, rate=10,
                 timeout=15)
    assert (r.returncode, r.successful, r.failed) == (0, 2, 0), r.summary()


def _silent_for(port: int, seconds: float) -> bool:
    try:
        options_ping(port, "udp", timeout=seconds)
    except TimeoutError:
        return True
    return False


def test_flooding_source_is_banned_then_served_again(
    sipp: SippRunner, server: ReqinitServer,
) -> None:
    time.sleep(1.2)  # let the readiness probes' pike unit pass
    r = sipp.run("options_flood.xml", f"{LOOPBACK}:{server.port}", calls=200, rate=400,
                 timeout=20)
    assert r.successful >= 1, r.summary()  # served until the threshold
    assert r.failed >= 100, r.summary()  # then nothing: banned
    banned_at = time.monotonic()
    assert _silent_for(server.port, 1.0), "a banned source was answered"
    # the ban (htable autoexpire) ends; the source is served again
    deadline = banned_at + BAN_SECONDS + 6
    status = None
    while time.monotonic() < deadline and status is None:
        try:
            status = options_ping(server.port, "udp", timeout=0.5)
        except TimeoutError:
            continue
    assert status == 200, f"not served again after the ban\n{server.log_tail(20)}"
    assert time.monotonic() - banned_at >= BAN_SECONDS - 1.5


def test_nat_keepalive_options_pings_reach_a_flagged_binding(server: ReqinitServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
        s.settimeout(0.5)
        register = (
            f"REGISTER sip:{LOOPBACK}:{server.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bKnat1;rport\r\n"
            f"From: <sip:natuser@{LOOPBACK}>;tag=n1\r\nTo: <sip:natuser@{LOOPBACK}>\r\n"
            f"Call-ID: natreg-{port}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:natuser@{LOOPBACK}:{port}>\r\nExpires: 60\r\nX-NAT: yes\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        got_200 = False
        pings: list[bytes] = []
        deadline = time.monotonic() + 8
        s.sendto(register, (LOOPBACK, server.port))
        while time.monotonic() < deadline and len(pings) < 2:
            try:
                data = s.recv(65535)
            except TimeoutError:
                if not got_200:
                    s.sendto(register, (LOOPBACK, server.port))
                continue
            if response_status(data) == 200:
                got_200 = True
            elif data.startswith(b"OPTIONS "):
                pings.append(data)
        assert got_200, server.log_tail(20)
        assert len(pings) >= 2, f"no keep-alive pings\n{server.log_tail(20)}"
        first = pings[0].decode()
        assert first.startswith(f"OPTIONS sip:natuser@{LOOPBACK}:{port} SIP/2.0\r\n")
        assert "From: <sip:pinger@127.0.0.1>;tag=" in first
