"""The worker-scaling mode of bench/: the shared ladder, the summary and table, the hand-off
counters read from siprouter's log (no SIPp), and one tiny ``bench scaling`` run (SIPp).

No timing assertions: the run only has to give a highest passing rate with 1 and 2 workers
for each server it measured.
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

import bench.__main__ as bench_main
from bench.cgroups import CgroupError, find_controller
from bench.harness import KamailioServer, SiprouterServer
from bench.suite import Result, Settings, Step, by_workers, climb, scaling_table, summarize

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
STEPS = [100.0, 200.0, 400.0, 800.0]


def _ladder(capacity: float, start: float, alive: bool = True) -> tuple[float, list[float]]:
    ran: list[float] = []

    def step(rate: float) -> bool:
        ran.append(rate)
        return rate <= capacity

    return climb(STEPS, start, step, lambda: alive), ran


def test_climb_goes_up_from_the_start_until_a_step_fails() -> None:
    assert _ladder(400, 200) == (400, [200, 400, 800])
    assert _ladder(1000, 150) == (800, [200, 400, 800])  # the top passed: no more steps


def test_climb_goes_down_until_a_step_passes() -> None:
    assert _ladder(100, 400) == (100, [400, 200, 100])
    assert _ladder(50, 400) == (0.0, [400, 200, 100])  # none passed
    assert _ladder(200, 5000) == (200, [800, 400, 200])  # a start above the top: the top


def test_climb_stops_when_the_server_died() -> None:
    assert _ladder(1000, 200, alive=False) == (200, [200])
    assert _ladder(50, 400, alive=False) == (0.0, [400])


def _result(server: str, workers: int, max_rate: float, cpu: float, **kw: Any) -> Result:
    r = Result(server, "call-direct", 0, workers, rate=600, calls=2400, successful=2400)
    r.cpu_us, r.max_rate = cpu, max_rate
    r.ladder = [Step(max_rate, 4000, 4000, 0, True, cpu / 2)]
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_summary_by_workers_and_the_scaling_table() -> None:
    results = [
        _result("siprouter", 1, 1000, 400, cpu_shares=[1.0]),
        _result("siprouter", 2, 1800, 500, cpu_shares=[0.52, 0.47, 0.01], calls_sent=10_000,
                handoffs={"w0": {"responses_out": 15_000}, "w1": {"responses_in": 15_000}}),
        _result("kamailio-native", 1, 2000, 200, cpu_shares=[0.98, 0.02]),
        _result("kamailio-native", 2, 4000, 250, cpu_shares=[0.5, 0.5]),
    ]  # fmt: skip
    summary = summarize(results, by_workers)["call-direct"]
    assert summary["siprouter/2"]["max_rate"] == 1800
    assert summary["siprouter/2"]["cpu_us_at_max"] == 250
    assert summary["siprouter/2"]["busiest_share"] == 0.52
    assert summary["siprouter/2"]["handoffs_per_call"] == 1.5
    assert summary["siprouter/1"]["handoffs_per_call"] is None  # one worker hands nothing over
    st = Settings(["siprouter", "kamailio-native"], ["call-direct"], workers=2, rate=600,
                  ladder=[500, 1000, 2000, 4000])  # fmt: skip
    cells = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in scaling_table(results, st).splitlines()
        if line.startswith("| call-direct")
    ]
    rows = {c[1]: c for c in cells}
    assert rows["siprouter"][2:] == ["1000", "1800", "1.80x", "400", "500", "200", "250",
                                     "52%", "1.50"]  # fmt: skip
    # Kamailio passed the ladder's top step with 2 children: the ratio is a lower bound
    assert rows["kamailio-native"][2:5] == ["2000", "4000+", ">=2.00x"]
    assert rows["kamailio-native"][-1] == "-"


def test_handoff_counters_are_read_from_the_siprouter_log(tmp_path: Path) -> None:
    server = SiprouterServer(tmp_path, 2, "relay", count_handoffs=True)
    assert server.handoffs() == {}  # no log yet
    assert "info" in server.command()
    server.log_path.write_text(
        "2026-12-07 13:27:29,046 INFO [w0] siprouter: worker 0 hand-offs: requests_out=0 "
        "responses_out=51243 responses_in=0 dropped=0\n"
        "2026-12-07 13:27:29,046 INFO [w1] siprouter: worker 1 hand-offs: requests_out=0 "
        "responses_out=0 responses_in=51243 dropped=0\n"
        "2026-12-07 13:27:29,050 INFO siprouter.workers: siprouter stopped\n"
    )
    assert server.handoffs() == {
        "w0": {"requests_out": 0, "responses_out": 51243, "responses_in": 0, "dropped": 0},
        "w1": {"requests_out": 0, "responses_out": 0, "responses_in": 51243, "dropped": 0},
    }
    assert "warning" in SiprouterServer(tmp_path, 2, "relay").command()
    assert KamailioServer(tmp_path, 2, "relay").handoffs() == {}


def test_scaling_without_a_cgroup_controller_is_one_line_and_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_controller() -> tuple[str, Path]:
        raise CgroupError("no writable cgroup CPU controller (test)")

    monkeypatch.setattr(bench_main, "find_controller", no_controller)
    assert bench_main.main(["scaling", "--no-install"]) == 1
    err = capsys.readouterr().err
    assert err == "--cpu-cap: no writable cgroup CPU controller (test)\n"


def test_scaling_smoke(tmp_path: Path) -> None:
    """``bench scaling --smoke``: each server with 1 and 2 workers (capped when this machine
    lets the benchmark make cgroups, else uncapped) gives a passing rate."""
    if shutil.which("sipp") is None:
        reason = "sipp is not installed (Debian package sip-tester; ./scripts/test installs it)"
        if IN_CI:
            pytest.fail(reason + " - required under CI")
        pytest.skip(reason)
    try:
        find_controller()
        cap = "0.2"
    except CgroupError:
        cap = "0"
    out = tmp_path / "scaling.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "scaling", "--smoke", "--scenarios", "call-direct",
         "--cpu-cap", cap, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    data: dict[str, Any] = json.loads(out.read_text())
    servers = data["settings"]["servers"]
    assert "siprouter" in servers, output
    for server in servers:
        for workers in (1, 2):
            figures = data["summary"]["call-direct"][f"{server}/{workers}"]
            assert figures["max_rate"] is not None and figures["max_rate"] > 0, (server, output)
            assert isinstance(figures["cpu_us"], float), (server, output)
    assert "| call-direct | siprouter |" in done.stdout
