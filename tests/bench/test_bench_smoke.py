"""Smoke test of the benchmark suite (bench/): one tiny run, numbers for both servers.

No timing assertions: the run only has to produce a CPU-per-call figure and a passing rate
step for siprouter and for Kamailio (native config and Lua KEMI). Needs SIPp; the Kamailio
half is skipped only when Kamailio is not installed and cannot be installed (apt-get).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
SCENARIOS = ("register", "call-direct", "call-location")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("sipp") is None:
        reason = "sipp is not installed (Debian package sip-tester; ./scripts/test installs it)"
        if IN_CI:
            pytest.fail(reason + " - required under CI")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    data["_output"] = done.stdout + done.stderr
    return data


def _assert_numbers(data: dict[str, Any], server: str) -> None:
    summary = data["summary"]
    for scenario in SCENARIOS:
        figures = summary[scenario][server]
        assert isinstance(figures["cpu_us"], float), (scenario, server, data["_output"][-3000:])
        assert figures["cpu_us"] >= 0.0
        assert figures["max_rate"] is not None and figures["max_rate"] > 0, (
            scenario, server, data["_output"][-3000:],
        )  # fmt: skip


def test_smoke_gives_siprouter_numbers(smoke: dict[str, Any]) -> None:
    _assert_numbers(smoke, "siprouter")
    assert isinstance(smoke["summary"]["register-auth"]["siprouter"]["cpu_us"], float)


def test_smoke_gives_kamailio_numbers(smoke: dict[str, Any]) -> None:
    if "kamailio-native" not in smoke["settings"]["servers"]:
        reason = "Kamailio is not installed and could not be installed: " + smoke["_output"][-500:]
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    for server in ("kamailio-native", "kamailio-kemi"):
        _assert_numbers(smoke, server)
        assert isinstance(smoke["summary"]["register-auth"][server]["cpu_us"], float)
