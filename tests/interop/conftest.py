"""Fixtures of the interop suite (helpers in interop_support.py).

- ``sipp_bin``: the path of ``sipp``. Missing sipp skips the test on a developer machine and
  fails it under CI (``CI=true``), where ``scripts/test`` installs it.
- ``siprouter``: a started server on a fresh port, stopped with SIGTERM at teardown, which must
  end it with exit status 0; the end of its log is printed (shown when the test fails).
- ``sipp``: a :class:`SippRunner` working in the test's tmp dir; background SIPp processes are
  killed at teardown.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import IN_CI, SippRunner, SiprouterServer


@pytest.fixture(scope="session")
def sipp_bin() -> str:
    path = shutil.which("sipp")
    if path is None:
        reason = "sipp is not installed (Debian package sip-tester; ./scripts/test installs it)"
        if IN_CI:
            pytest.fail(reason + " - required under CI")
        pytest.skip(reason)
    return path


@pytest.fixture
def siprouter(tmp_path: Path) -> Iterator[SiprouterServer]:
    """A started server; stopped with SIGTERM at teardown, which must end it with status 0."""
    server = SiprouterServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        try:
            if server.alive():
                server.stop_cleanly()
        finally:
            print(server.log_tail(40))


@pytest.fixture
def sipp(sipp_bin: str, tmp_path: Path) -> Iterator[SippRunner]:
    runner = SippRunner(sipp_bin, tmp_path)
    try:
        yield runner
    finally:
        runner.close()
