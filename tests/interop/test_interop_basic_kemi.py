"""Kamailio's basic KEMI setup on siprouter, driven by SIPp.

The server runs as operators start it from the shipped example, ``siprouter run --config
examples/kamailio-basic-kemi.toml --script SCRIPT`` (plus loopback listen / database / one
worker), with a routing script that makes the calls of Kamailio's basic KEMI scripts in the
same roles: scripts/basic_kemi.lua and scripts/basic_kemi.py (app_python3 style); each test runs
once per script. The subscribers are added with ``siprouter subscriber add`` into the same
database before the start. The example config is copied with shorter pike / ipban timings
only (and checked to hold the values it replaces).

Other scripts written for Kamailio's basic configuration (e.g. Kamailio's own
kamailio-basic-kemi-lua.lua / -python.py, kept outside this repository) can be run through the
same flows with ``SIPROUTER_BASIC_KEMI_SCRIPTS=/path/a.lua:/path/b.py``; nothing is fetched.

All traffic stays on the loopback network (the flooding source is 127.0.0.2, since a request
from one of the server's own addresses is exempt from pike as in the scripts); every run and
wait is bounded.
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import (
    LOOPBACK,
    REPO_ROOT,
    SippResult,
    SippRunner,
    SiprouterServer,
    free_port,
    response_call_id,
    response_status,
)

pytestmark = pytest.mark.interop

SCRIPTS_DIR = Path(__file__).parent / "scripts"
EXAMPLE = REPO_ROOT / "examples" / "kamailio-basic-kemi.toml"
USERS = {"alice": "s3cret", "bob": "b0b-Pa55"}
BAN_SECONDS = 3
FLOOD_IP = "127.0.0.2"  # a loopback address that is not the server's

# the example's values -> the test's (each must be in the example as written)
SHORTER_TIMINGS = {
    'htable = ["ipban=>size=8;autoexpire=300;"]':
        f'htable = ["ipban=>size=8;autoexpire={BAN_SECONDS};"]',
    "sampling_time_unit = 2": "sampling_time_unit = 1",
    "remove_latency = 4": "remove_latency = 2",
}


def _scripts() -> list[Path]:
    out = [SCRIPTS_DIR / "basic_kemi.lua", SCRIPTS_DIR / "basic_kemi.py"]
    extra = os.environ.get("SIPROUTER_BASIC_KEMI_SCRIPTS", "")
    out += [Path(p) for p in extra.split(os.pathsep) if p.strip()]
    return out


def test_config_copy_only_shortens_the_timings(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    for old in SHORTER_TIMINGS:
        assert text.count(old) == 1, f"{old!r} is no longer in {EXAMPLE.name}"
    # the example holds the cfg's modparam equivalents the flows rely on
    for needed in ('"auth"', '"auth_db"', '"permissions"', '"pike"', '"htable"', '"nathelper"',
                   "calculate_ha1 = true", 'password_column = "password"',
                   "reqs_density_per_unit = 16"):
        assert needed in text, needed


class BasicKemiServer(SiprouterServer):
    """``siprouter run --config <example copy> --script SCRIPT`` with one worker."""

    def __init__(self, workdir: Path, script: Path) -> None:
        super().__init__(workdir, db=workdir / "kemi.sqlite", workers=1)
        text = EXAMPLE.read_text()
        for old, new in SHORTER_TIMINGS.items():
            text = text.replace(old, new)
        self.config = workdir / "kamailio-basic-kemi.toml"
        self.config.write_text(text)
        self.extra = ["--config", str(self.config), "--script", str(script)]

    def add_subscriber(self, user: str, password: str) -> None:
        r = subprocess.run(
            [sys.executable, "-m", "siprouter", "subscriber", "add", f"{user}@{LOOPBACK}",
             password, "--config", str(self.config), "--db", f"sqlite:///{self.db}"],
            capture_output=True, text=True, timeout=30, check=False, cwd=self.workdir,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"


@pytest.fixture(params=_scripts(), ids=lambda p: p.name)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BasicKemiServer]:
    srv = BasicKemiServer(tmp_path, request.param)
    for user, password in USERS.items():
        srv.add_subscriber(user, password)
    srv.start()
    try:
        yield srv
    finally:
        try:
            if srv.alive():
                srv.stop_cleanly()
        finally:
            print(srv.log_tail(60))


# -- SIPp message logs ------------------------------------------------------------------------
_SEPARATOR = re.compile(r"^-{20,}[^\n]*\n", re.MULTILINE)


def received(result: SippResult) -> list[str]:
    """The SIP messages SIPp received, in order (the run needs ``trace_msg=True``)."""
    assert result.message_log is not None
    text = result.message_log.read_text(errors="replace").replace("\r\n", "\n")
    out = []
    for chunk in _SEPARATOR.split(text):
        head, _, body = chunk.partition("\n")
        if "message received" in head:
            out.append(body.strip("\n") + "\n")
    return out


def start_lines(msgs: list[str]) -> list[str]:
    return [m.split("\n", 1)[0] for m in msgs]


def ok(result: SippResult, server: SiprouterServer, calls: int = 1) -> None:
    good = (result.returncode, result.successful, result.failed) == (0, calls, 0)
    assert good, f"{result.summary()}\n{server.log_tail(40)}"


# -- flows ------------------------------------------------------------------------------------
def test_register_401_then_200_then_401_with_a_wrong_password(
    sipp: SippRunner, server: BasicKemiServer,
) -> None:
    r = sipp.run("auth_register.xml", server.target, timeout=15, trace_msg=True)
    ok(r, server)
    assert start_lines(received(r)) == [
        "SIP/2.0 401 Unauthorized", "SIP/2.0 200 OK",
        "SIP/2.0 401 Unauthorized", "SIP/2.0 401 Unauthorized",
    ]
    server.assert_alive()


def test_authenticated_call_between_two_registered_users(
    sipp: SippRunner, server: BasicKemiServer,
) -> None:
    uas_port = free_port()
    reg = sipp.run("kemi_register_auth.xml", server.target, "-au", "bob", "-ap", USERS["bob"],
                   service="bob", local_port=uas_port, timeout=15, trace_msg=True)
    ok(reg, server)
    assert start_lines(received(reg)) == ["SIP/2.0 401 Unauthorized", "SIP/2.0 200 OK"]
    uas = sipp.start("uas_answer.xml", local_port=uas_port, timeout=20, trace_msg=True)
    uac = sipp.run("kemi_uac_auth_call.xml", server.target, "-key", "caller", "alice",
                   "-au", "alice", "-ap", USERS["alice"], service="bob", timeout=20,
                   trace_msg=True)
    callee = uas.wait()
    ok(uac, server)
    ok(callee, server)
    got = [ln for ln in start_lines(received(uac)) if not ln.startswith("SIP/2.0 100")]
    assert got == ["SIP/2.0 407 Proxy Authentication Required", "SIP/2.0 180 Ringing",
                   "SIP/2.0 200 OK", "SIP/2.0 200 OK"], got
    at_callee = received(callee)
    methods = [ln.split(" ", 1)[0] for ln in start_lines(at_callee)]
    assert methods == ["INVITE", "ACK", "BYE"], methods
    invite = at_callee[0]
    assert invite.startswith(f"INVITE sip:bob@{LOOPBACK}:{uas_port}")
    # record_route, and consume_credentials took the caller's credentials out
    assert re.search(rf"^Record-Route: <sip:{re.escape(LOOPBACK)}:{server.port};lr",
                     invite, re.MULTILINE | re.IGNORECASE), invite
    assert "proxy-authorization" not in invite.lower()
    server.assert_alive()


def test_invite_from_a_local_user_without_credentials_gets_407(
    sipp: SippRunner, server: BasicKemiServer,
) -> None:
    r = sipp.run("auth_invite_407.xml", server.target, timeout=15, trace_msg=True)
    ok(r, server)
    final = [ln for ln in start_lines(received(r)) if not ln.startswith("SIP/2.0 1")]
    assert final == ["SIP/2.0 407 Proxy Authentication Required"]
    assert "Proxy-Authenticate: Digest realm=\"127.0.0.1\"" in received(r)[-1]


def test_call_from_a_foreign_domain_to_a_foreign_domain_gets_403(
    sipp: SippRunner, server: BasicKemiServer,
) -> None:
    r = sipp.run("kemi_foreign_relay.xml", server.target, timeout=15, trace_msg=True)
    ok(r, server)
    final = [ln for ln in start_lines(received(r)) if not ln.startswith("SIP/2.0 1")]
    assert final == ["SIP/2.0 403 Not relaying"]
    server.assert_alive()


def test_options_to_the_server_is_answered_200_keepalive(
    sipp: SippRunner, server: BasicKemiServer,
) -> None:
    r = sipp.run("options_keepalive.xml", server.target, calls=3, rate=10, timeout=15)
    ok(r, server, calls=3)


def test_max_forwards_zero_gets_483(sipp: SippRunner, server: BasicKemiServer) -> None:
    r = sipp.run("maxfwd_zero.xml", server.target, calls=2, rate=10, timeout=15,
                 trace_msg=True)
    ok(r, server, calls=2)
    assert set(start_lines(received(r))) == {"SIP/2.0 483 Too Many Hops"}


def options_from(host: str, server_port: int, timeout: float) -> int | None:
    """One OPTIONS from ``host`` (resent every 250 ms); its final status, None if unanswered."""
    call_id = f"kemi{random.getrandbits(48):012x}"
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
        request = (
            f"OPTIONS sip:{LOOPBACK}:{server_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{call_id};rport\r\n"
            f"From: <sip:probe@{host}>;tag={call_id}\r\nTo: <sip:{LOOPBACK}:{server_port}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        next_send = 0.0
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                s.sendto(request, (LOOPBACK, server_port))
                next_send = now + 0.25
            s.settimeout(max(0.01, min(next_send, deadline) - now))
            try:
                data = s.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                continue
            status = response_status(data)
            if status is not None and status >= 200 and response_call_id(data) == call_id.encode():
                return status
    return None


def test_flooding_source_is_banned_then_served_again(
    sipp: SippRunner, server: BasicKemiServer,
) -> None:
    assert options_from(FLOOD_IP, server.port, 2.0) == 200  # served before the flood
    time.sleep(1.1)  # a fresh pike sampling unit
    r = sipp.run("options_flood.xml", server.target, "-i", FLOOD_IP, calls=200, rate=400,
                 timeout=20)
    flood_end = time.monotonic()
    assert r.successful >= 1, r.summary()  # served up to the threshold
    assert r.failed >= 100, r.summary()  # then answered with nothing
    assert options_from(FLOOD_IP, server.port, 1.0) is None, "a banned source was answered"
    assert options_from(LOOPBACK, server.port, 2.0) == 200  # others are still served
    status = None
    deadline = flood_end + BAN_SECONDS + 6
    while status is None and time.monotonic() < deadline:
        status = options_from(FLOOD_IP, server.port, 0.5)
    assert status == 200, f"not served again after the ban\n{server.log_tail(20)}"
    assert time.monotonic() - flood_end >= BAN_SECONDS - 1.5
    server.assert_alive()
