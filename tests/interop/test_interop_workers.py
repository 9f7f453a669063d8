"""SIPp against siprouter with several worker processes on one port (--workers 1, 2, 4).

SIPp's ``-t un`` gives every call its own UDP source port, so the kernel spreads the calls over
the workers (SO_REUSEPORT hashes the source address): REGISTERs land on every worker, lookups
on other workers than the REGISTER's, and responses from the callee (one source) reach one
worker only -- the others' transactions get their responses handed over.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_support import LOOPBACK, SippResult, SippRunner, SiprouterServer, free_port

from siprouter.transport.local import wildcard_advertise

pytestmark = pytest.mark.interop

WORKERS = [1, 2, 4]


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents[int(entry.name)] = ppid
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for child, parent in parents.items():
            if parent == p and child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose only once reaped; report it as alive
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


class _Node:
    """A server with N workers; at teardown SIGTERM must end every process with status 0."""

    def __init__(self, tmp_path: Path, workers: int, config: str | None = None) -> None:
        extra: list[str] = []
        if config is not None:
            cfg = tmp_path / "workers.toml"
            cfg.write_text(config)
            extra = ["--config", str(cfg)]
        self.server = SiprouterServer(tmp_path, workers=workers, extra=extra)
        self.workers = workers

    def start(self) -> None:
        self.server.start()
        assert self.server.proc is not None
        deadline = time.monotonic() + 10
        want = self.workers if self.workers > 1 else 0
        while time.monotonic() < deadline and len(_children(self.server.proc.pid)) < want:
            time.sleep(0.05)
        kids = _children(self.server.proc.pid)
        assert len(kids) == want, f"{len(kids)} worker processes, expected {want}"

    def stop_and_check(self) -> None:
        """Stop with SIGTERM: status 0 and no process of the node left behind."""
        proc = self.server.proc
        assert proc is not None
        kids = _children(proc.pid)
        self.server.stop_cleanly()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.05)
        left = [k for k in kids if _alive(k)]
        assert not left, f"worker processes left after stop: {left}"

    def handoffs_per_worker(self, what: str = "hand-offs") -> dict[int, dict[str, int]]:
        """Each worker's hand-off counters (or with ``what="traffic"`` its message counters),
        logged at stop."""
        out: dict[int, dict[str, int]] = {}
        for line in self.server.log_text().splitlines():
            m = re.search(rf"worker (\d+) {what}: (.*)$", line)
            if m:
                out[int(m.group(1))] = {k: int(v) for k, _, v in
                                        (item.partition("=") for item in m.group(2).split())}
        return out

    def handoffs(self) -> dict[str, int]:
        """Sum of the workers' hand-off counters (logged at stop)."""
        total: dict[str, int] = {}
        for line in self.server.log_text().splitlines():
            if " hand-offs: " in line:
                for item in line.split(" hand-offs: ", 1)[1].split():
                    k, _, v = item.partition("=")
                    total[k] = total.get(k, 0) + int(v)
        return total


@pytest.fixture(params=WORKERS, ids=[f"workers{n}" for n in WORKERS])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Node]:
    n = _Node(tmp_path, request.param)
    n.start()
    try:
        yield n
    finally:
        try:
            if n.server.alive():
                n.server.stop_cleanly()
        finally:
            n.server.kill()
            print(n.server.log_tail(40))


def assert_all_ok(result: SippResult, calls: int, server: SiprouterServer) -> None:
    ok = (result.returncode, result.successful, result.failed) == (0, calls, 0)
    assert ok, f"{result.summary()}\n{server.log_tail(30)}"


def _register_many(sipp: SippRunner, node: _Node, users: list[str], contact_port: int) -> None:
    """REGISTER every user with a Contact at 127.0.0.1:contact_port, each from its own port."""
    result = sipp.run(
        "reg_contact.xml", f"{LOOPBACK}:{node.server.port}", "-t", "un", "-max_socket", "1000",
        "-key", "contact_port", str(contact_port),
        calls=len(users), rate=200, timeout=60, users=users,
    )  # fmt: skip
    assert_all_ok(result, len(users), node.server)


def _call_through(sipp: SippRunner, node: _Node, uas_port: int, calls: int, rate: int,
                  users: list[str], *uac_args: str) -> None:
    """``calls`` answered calls from SIPp to ``users`` through the node to a SIPp UAS on
    ``uas_port``; every call must succeed on both sides."""
    uas = sipp.start("uas_answer.xml", calls=calls, local_port=uas_port, timeout=60)
    uac = sipp.run("uac_call_inf.xml", f"{LOOPBACK}:{node.server.port}", *uac_args,
                   calls=calls, rate=rate, timeout=60, users=users)
    uas_result = uas.wait()
    assert_all_ok(uac, calls, node.server)
    assert_all_ok(uas_result, calls, node.server)


def test_register_1000_then_call_across_workers(sipp: SippRunner, node: _Node) -> None:
    users = [f"w{i:04d}" for i in range(1000)]
    uas_port = free_port()
    _register_many(sipp, node, users, uas_port)
    _call_through(sipp, node, uas_port, 200, 40, users[::5], "-t", "un", "-max_socket", "1000")
    node.stop_and_check()
    counts = node.handoffs()
    if node.workers > 1:
        # every REGISTER was replicated to every other worker ...
        assert counts.get("published", 0) == len(users), counts
        assert counts.get("applied", 0) == len(users) * (node.workers - 1), counts
        # ... and the callee's answers (one source) went straight to the INVITE's owner: the
        # kernel steered each by its Via branch (transport.steering), none was handed over
        assert counts.get("responses_out", 0) == 0, counts
        assert counts.get("responses_in", 0) == 0, counts
        assert counts.get("dropped", 0) == 0, counts
        # ... while the calls themselves were spread over the workers
        per = node.handoffs_per_worker("traffic")
        assert len(per) == node.workers, per
        assert all(w["fwd_requests"] > 0 for w in per.values()), per


@pytest.mark.parametrize("steer", [True, False], ids=["steered", "hashed"])
def test_responses_reach_the_worker_of_their_transaction(
    sipp: SippRunner, tmp_path: Path, steer: bool,
) -> None:
    """With the steering program every response of the callee (one source address) reaches
    the worker that relayed its request; without it (the kernel's hash alone) the worker the
    callee hashes to hands the others' responses over. Both ways every call succeeds."""
    n = _Node(tmp_path, 2, config=f"[server]\nudp_steering = {str(steer).lower()}\n")
    n.start()
    try:
        uas_port = free_port()
        users = [f"s{i:02d}" for i in range(20)]
        _register_many(sipp, n, users, uas_port)
        calls = 100
        _call_through(sipp, n, uas_port, calls, 50, users, "-t", "un", "-max_socket", "1000")
        n.stop_and_check()
        traffic = n.handoffs_per_worker("traffic")
        assert sorted(traffic) == [0, 1], traffic
        relayed = [w["fwd_requests"] for w in traffic.values()]
        assert min(relayed) > 0, traffic  # both workers relayed calls
        total = n.handoffs()
        assert total.get("responses_out", 0) == total.get("responses_in", 0), total
        if steer:
            assert total.get("responses_out", 0) == 0, total
        else:
            # the callee's responses all land on one worker; the other one relayed requests
            # too, so their responses were handed over
            assert total.get("responses_out", 0) > 0, total
    finally:
        n.server.kill()


@pytest.mark.parametrize("workers", [2, 4])
def test_cancel_gets_487_with_workers(sipp: SippRunner, tmp_path: Path, workers: int) -> None:
    n = _Node(tmp_path, workers)
    n.start()
    try:
        calls = 20
        uas_port = free_port()
        _register_many(sipp, n, ["carol"], uas_port)
        uas = sipp.start("uas_ring_no_answer.xml", calls=calls, local_port=uas_port, timeout=30)
        uac = sipp.run(
            "uac_cancel.xml", f"{LOOPBACK}:{n.server.port}", "-t", "un", "-max_socket", "1000",
            calls=calls, rate=10, timeout=30, service="carol",
        )  # fmt: skip
        uas_result = uas.wait()
        assert_all_ok(uac, calls, n.server)
        assert_all_ok(uas_result, calls, n.server)
        n.stop_and_check()
    finally:
        n.server.kill()


@pytest.mark.parametrize("dispatch", ["call-id", "source"])
def test_calls_from_one_source_spread_over_workers_by_call_id(
    sipp: SippRunner, tmp_path: Path, dispatch: str,
) -> None:
    """One peer (one source address: a trunk) lands on one worker (SO_REUSEPORT); with
    udp_dispatch = "call-id" its calls are shared by both workers, each call whole on one."""
    n = _Node(tmp_path, 2, config=f'[server]\nudp_dispatch = "{dispatch}"\n')
    n.start()
    try:
        uas_port = free_port()
        _register_many(sipp, n, ["trunk"], uas_port)
        calls = 100
        _call_through(sipp, n, uas_port, calls, 50, ["trunk"])  # one socket: one source
        n.stop_and_check()
        per = n.handoffs_per_worker()
        assert sorted(per) == [0, 1], per
        total = n.handoffs()
        assert total.get("requests_out", 0) == total.get("requests_in", 0), per
        if dispatch == "source":
            assert total.get("requests_out", 0) == 0, per
        else:
            # INVITE, ACK, BYE of about half the calls go to the other worker, which also
            # receives their responses from the callee directly or by hand-off
            received = [w.get("requests_in", 0) for w in per.values()]
            assert max(received) >= calls // 4 * 3, per  # at least 25 calls x 3 requests
        assert total.get("dropped", 0) == 0, per
    finally:
        n.server.kill()


def test_restart_keeps_bindings_with_workers(sipp: SippRunner, tmp_path: Path) -> None:
    n = _Node(tmp_path, 2)
    n.start()
    try:
        users = [f"r{i:03d}" for i in range(100)]
        uas_port = free_port()
        _register_many(sipp, n, users, uas_port)
        n.stop_and_check()
        n.start()  # same port, same database
        _call_through(sipp, n, uas_port, 50, 25, users[::2], "-t", "un", "-max_socket", "1000")
        n.stop_and_check()
    finally:
        n.server.kill()


def test_dead_worker_is_restarted(tmp_path: Path) -> None:
    n = _Node(tmp_path, 2)
    n.start()
    try:
        assert n.server.proc is not None
        victim = min(_children(n.server.proc.pid))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = _children(n.server.proc.pid)
            if victim not in kids and len(kids) == 2:
                break
            time.sleep(0.05)
        kids = _children(n.server.proc.pid)
        assert victim not in kids and len(kids) == 2, n.server.log_tail(20)
        n.server.assert_alive()
        assert "died with signal 9" in n.server.log_text()
        n.stop_and_check()
    finally:
        n.server.kill()


def test_responses_still_steered_after_a_worker_restart(
    sipp: SippRunner, tmp_path: Path,
) -> None:
    """The steering program returns a socket's slot in the port's group. A socket that leaves
    the group gives its slot to the last one, so had worker 0's socket closed with it, worker
    2's socket would now sit in slot 0 and receive worker 0's responses. The supervisor keeps
    every socket open: the restarted worker 0 takes its old socket and slot back."""
    n = _Node(tmp_path, 3)
    n.start()
    try:
        log = n.server.log_text()
        m = re.search(r"worker 0 started \(pid (\d+)\)", log)
        assert m is not None, log
        os.kill(int(m.group(1)), signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if n.server.log_text().count("[w0] siprouter: siprouter started") >= 2:
                break
            time.sleep(0.05)
        assert n.server.log_text().count("[w0] siprouter: siprouter started") >= 2, \
            n.server.log_tail(20)
        uas_port = free_port()
        users = [f"k{i:02d}" for i in range(30)]
        _register_many(sipp, n, users, uas_port)
        _call_through(sipp, n, uas_port, 90, 45, users, "-t", "un", "-max_socket", "1000")
        n.stop_and_check()
        traffic = n.handoffs_per_worker("traffic")
        assert sorted(traffic) == [0, 1, 2], traffic
        assert all(w["fwd_requests"] > 0 for w in traffic.values()), traffic
        total = n.handoffs()
        assert total.get("responses_out", 0) == 0, n.handoffs_per_worker()
    finally:
        n.server.kill()


class _WildcardServer(SiprouterServer):
    """Listening on udp:0.0.0.0 (every address), with no --domain: "myself" and the address
    in our Via and Record-Route must come from the host's own addresses."""

    def command(self) -> list[str]:
        workers = [] if self.workers is None else ["--workers", str(self.workers)]
        return [sys.executable, "-m", "siprouter", "run",
                "--listen", f"udp:0.0.0.0:{self.port}", "--db", f"sqlite:///{self.db}",
                "--log-level", "info", *workers]


def test_wildcard_listen_advertises_a_real_address(sipp: SippRunner, tmp_path: Path) -> None:
    """A Via of 0.0.0.0 would send the callee's responses to the callee itself. The wildcard
    listen advertises the default route's source address (this host's), requests to
    127.0.0.1 are "myself", and the steering program matches the advertised Via."""
    n = _Node(tmp_path, 2)
    n.server = _WildcardServer(tmp_path, workers=2)
    n.start()
    try:
        expected = wildcard_advertise(socket.AF_INET)
        assert f"advertises {expected}" in n.server.log_text()
        uas_port = free_port()
        users = [f"x{i:02d}" for i in range(20)]
        _register_many(sipp, n, users, uas_port)
        _call_through(sipp, n, uas_port, 60, 30, users, "-t", "un", "-max_socket", "1000")
        n.stop_and_check()
        total = n.handoffs()
        assert total.get("responses_out", 0) == 0, n.handoffs_per_worker()
        listening = f"listening on <Listener udp:0.0.0.0:{n.server.port} advertise "
        assert f"{listening}{expected}:{n.server.port}>" in n.server.log_text()
    finally:
        n.server.kill()


def test_workers_end_when_the_main_process_is_killed(tmp_path: Path) -> None:
    n = _Node(tmp_path, 2)
    n.start()
    try:
        assert n.server.proc is not None
        kids = _children(n.server.proc.pid)
        n.server.proc.kill()  # SIGKILL: no chance to stop the workers itself
        n.server.proc.wait(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.05)
        assert not [k for k in kids if _alive(k)], "workers outlived the main process"
    finally:
        n.server.kill()
