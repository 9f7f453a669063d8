"""Digest authentication against a real server process, driven by SIPp.

The subscriber is added with ``siprouter subscriber add`` into the server's database; the
routing script (scripts/auth_route.py) is the auth part of Kamailio's basic KEMI scripts.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import LOOPBACK, SippRunner, SiprouterServer

SCRIPT = Path(__file__).parent / "scripts" / "auth_route.py"


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[SiprouterServer]:
    db = tmp_path / "auth.sqlite"
    r = subprocess.run(
        [sys.executable, "-m", "siprouter", "subscriber", "add", f"alice@{LOOPBACK}", "s3cret",
         "--db", f"sqlite:///{db}"], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    srv = SiprouterServer(tmp_path, db=db, workers=1, extra=["--script", str(SCRIPT)])
    srv.start()
    yield srv
    srv.stop_cleanly()


def test_register_401_200_401(auth_server: SiprouterServer, sipp: SippRunner) -> None:
    res = sipp.run("auth_register.xml", f"{LOOPBACK}:{auth_server.port}", trace_msg=True)
    assert res.returncode == 0 and res.successful == 1, res.summary()
    assert res.message_log is not None
    log = res.message_log.read_text(errors="replace")
    assert log.count("SIP/2.0 401 Unauthorized") == 3, log[-3000:]
    assert log.count("SIP/2.0 200 OK") == 1
    auth_server.assert_alive()


def test_invite_without_credentials_407(auth_server: SiprouterServer, sipp: SippRunner) -> None:
    res = sipp.run("auth_invite_407.xml", f"{LOOPBACK}:{auth_server.port}")
    assert res.returncode == 0 and res.successful == 1, res.summary()
    auth_server.assert_alive()
