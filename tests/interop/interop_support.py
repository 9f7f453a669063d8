"""Helpers of the interop suite: free loopback ports, a SIP probe, the server process, SIPp runs.

Everything talks to 127.0.0.1 only and every wait is bounded. The fixtures that use these
helpers live in conftest.py beside this file.

- :class:`SiprouterServer`: ``python -m siprouter run`` on a fresh port (UDP and TCP), its
  SQLite database and log in a given directory; ready once it answers an OPTIONS; stopped with
  SIGTERM, after which it must exit with status 0.
- :class:`SippRunner`: ``run()`` / ``start()`` a scenario from ``tests/interop/scenarios``,
  returning a :class:`SippResult` with the call counts, the error log and the final screen.
"""

from __future__ import annotations

import csv
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).parent / "scenarios"
REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

# Bounds (seconds).
SERVER_READY_TIMEOUT = 10.0
SERVER_STOP_TIMEOUT = 10.0
OPTIONS_TIMEOUT = 2.0

# ---------------------------------------------------------------------------------------------
# ports

_handed_out: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1, never handed out before in this run.

    The kernel picks an ephemeral UDP port; the same number must also bind for TCP. Ports are
    remembered so that two servers or SIPp peers in one session never get the same number,
    even after the first has released it.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = int(udp.getsockname()[1])
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free UDP+TCP port on 127.0.0.1 after 200 attempts")


# ---------------------------------------------------------------------------------------------
# a minimal SIP client for readiness / liveness probes

_STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3})")
_CALL_ID_RE = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def response_status(data: bytes) -> int | None:
    """The status code of a SIP response, None if ``data`` is not one."""
    m = _STATUS_RE.match(data)
    return int(m.group(1)) if m else None


def response_call_id(data: bytes) -> bytes | None:
    m = _CALL_ID_RE.search(data)
    return m.group(1) if m else None


def build_options(local_port: int, server_port: int, transport: str, call_id: str) -> bytes:
    return (
        f"OPTIONS sip:{LOOPBACK}:{server_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} {LOOPBACK}:{local_port}"
        f";branch=z9hG4bK{call_id};rport\r\n"
        f"From: <sip:probe@{LOOPBACK}>;tag={call_id}\r\n"
        f"To: <sip:{LOOPBACK}:{server_port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def options_ping(server_port: int, transport: str = "udp", timeout: float = OPTIONS_TIMEOUT) -> int:
    """Send one OPTIONS to the server; return the first final status (any 1xx is skipped).

    Raises TimeoutError when no final answer arrives within ``timeout`` seconds (UDP sends are
    repeated every 250 ms within that time, like a client transaction would).
    """
    call_id = f"probe{random.getrandbits(48):012x}"
    deadline = time.monotonic() + timeout
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, 0))
            request = build_options(s.getsockname()[1], server_port, "udp", call_id)
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
                if (
                    status is not None
                    and status >= 200
                    and response_call_id(data) == call_id.encode()
                ):
                    return status
        raise TimeoutError(f"no answer to OPTIONS over UDP to port {server_port} in {timeout}s")
    with socket.create_connection((LOOPBACK, server_port), timeout=timeout) as c:
        request = build_options(c.getsockname()[1], server_port, "tcp", call_id)
        c.sendall(request)
        buf = b""
        while (now := time.monotonic()) < deadline:
            c.settimeout(max(0.01, deadline - now))
            try:
                chunk = c.recv(65535)
            except TimeoutError:
                break
            if not chunk:
                break
            buf += chunk
            # Responses to an OPTIONS carry no body we care about; split on the header end.
            while b"\r\n\r\n" in buf:
                head, _, buf = buf.partition(b"\r\n\r\n")
                status = response_status(head)
                if (
                    status is not None
                    and status >= 200
                    and response_call_id(head) == call_id.encode()
                ):
                    return status
        raise TimeoutError(f"no answer to OPTIONS over TCP to port {server_port} in {timeout}s")


# ---------------------------------------------------------------------------------------------
# the server under test


class SiprouterServer:
    """One ``python -m siprouter run`` process on 127.0.0.1:port (UDP and TCP)."""

    def __init__(
        self, workdir: Path, port: int | None = None, db: Path | None = None,
        workers: int | None = None, extra: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        #: more command-line arguments (``--config FILE``, ``--script FILE`` ...)
        self.extra = list(extra or [])
        #: ``--workers N`` (None: the server's default, one per core)
        self.workers = workers
        self.port = port if port is not None else free_port()
        self.db = db if db is not None else workdir / "loc.sqlite"
        self.log_path = workdir / f"siprouter-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command(self) -> list[str]:
        workers = [] if self.workers is None else ["--workers", str(self.workers)]
        return [
            sys.executable, "-m", "siprouter", "run",
            "--listen", f"udp:{LOOPBACK}:{self.port}",
            "--listen", f"tcp:{LOOPBACK}:{self.port}",
            "--db", f"sqlite:///{self.db}",
            "--domain", LOOPBACK,
            "--log-level", "info",
            *workers, *self.extra,
        ]  # fmt: skip

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"==== start #{self.starts}: {' '.join(self.command())}\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            log.close()
        deadline = time.monotonic() + SERVER_READY_TIMEOUT
        last_error = ""
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(
                    f"siprouter exited with status {code} while starting\n{self.log_tail()}"
                )
            try:
                options_ping(self.port, "udp", timeout=0.5)
                return
            except (TimeoutError, OSError) as exc:
                last_error = str(exc)
        self.kill()
        raise AssertionError(
            f"siprouter did not answer OPTIONS within {SERVER_READY_TIMEOUT}s ({last_error})\n"
            f"{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, wait (bounded), SIGKILL if it hangs. Returns the exit status."""
        proc = self.proc
        assert proc is not None, "server was never started"
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"siprouter ignored SIGTERM for {SERVER_STOP_TIMEOUT}s and was killed\n"
                    f"{self.log_tail()}"
                ) from None
        return int(proc.returncode)

    def stop_cleanly(self) -> None:
        code = self.stop()
        assert code == 0, f"siprouter exited with status {code} after SIGTERM\n{self.log_tail()}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def assert_alive(self) -> None:
        """The process runs and answers OPTIONS over UDP and TCP."""
        assert self.alive(), (
            f"siprouter died (status {self.proc and self.proc.poll()})\n{self.log_tail()}"
        )
        for transport in ("udp", "tcp"):
            try:
                options_ping(self.port, transport)
            except (TimeoutError, OSError) as exc:
                raise AssertionError(
                    f"siprouter stopped answering: {exc}\n{self.log_tail()}"
                ) from exc


# ---------------------------------------------------------------------------------------------
# SIPp


@dataclass
class SippResult:
    """Outcome of one SIPp run."""

    name: str
    returncode: int
    successful: int
    failed: int
    stdout: str
    errors: str
    workdir: Path
    message_log: Path | None = None
    stats: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """Text for assertion messages: counts, exit status, error log, end of the screen."""
        screen = "\n".join(self.stdout.splitlines()[-25:])
        errors = self.errors if len(self.errors) < 6000 else self.errors[:6000] + "\n[...]"
        return (
            f"sipp {self.name}: exit {self.returncode}, successful={self.successful}, "
            f"failed={self.failed}\n--- errors ---\n{errors or '(none)'}\n--- screen ---\n{screen}"
        )


# SIPp exit statuses (sipp(1)): 0 all calls succeeded, 1 at least one failed, 97 exit on
# internal command, 99 normal exit without calls processed, 255 (-1) fatal error,
# 254 (-2) fatal error binding a socket.


def parse_stat_csv(path: Path) -> dict[str, str]:
    """The last row of a ``-trace_stat`` CSV (``;``-separated) as a dict, {} if absent."""
    if not path.exists():
        return {}
    with path.open(newline="", errors="replace") as f:
        rows = [row for row in csv.reader(f, delimiter=";") if row]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


_SCREEN_COUNT_RE = {
    "successful": re.compile(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)"),
    "failed": re.compile(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)"),
}


class SippProcess:
    """A SIPp started in the background (a UAS); ``wait()`` collects its result."""

    def __init__(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        workdir: Path,
        timeout: float,
        message_log: Path | None,
    ) -> None:
        self.name = name
        self.proc = proc
        self.workdir = workdir
        self.timeout = timeout
        self.message_log = message_log

    def wait(self, timeout: float | None = None) -> SippResult:
        try:
            self.proc.wait(self.timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            # SIGUSR1 would dump; SIGTERM/-KILL end it. The counts come from its files.
            self.proc.kill()
            self.proc.wait(5)
        return _collect(self.name, int(self.proc.returncode), self.workdir, self.message_log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def _collect(name: str, returncode: int, workdir: Path, message_log: Path | None) -> SippResult:
    stdout = (workdir / "stdout.log").read_text(errors="replace")
    err_path = workdir / "errors.log"
    errors = err_path.read_text(errors="replace") if err_path.exists() else ""
    stats = parse_stat_csv(workdir / "stats.csv")
    counts: dict[str, int] = {}
    for key, column in (("successful", "SuccessfulCall(C)"), ("failed", "FailedCall(C)")):
        if column in stats and stats[column].strip().isdigit():
            counts[key] = int(stats[column])
        else:  # fall back to the final screen
            found = _SCREEN_COUNT_RE[key].findall(stdout)
            counts[key] = int(found[-1]) if found else -1
    return SippResult(
        name,
        returncode,
        counts["successful"],
        counts["failed"],
        stdout,
        errors,
        workdir,
        message_log,
        stats,
    )


class SippRunner:
    """Runs SIPp scenarios from tests/interop/scenarios, each in its own directory."""

    def __init__(self, sipp: str, tmp_path: Path) -> None:
        self.sipp = sipp
        self.tmp_path = tmp_path
        self.count = 0
        self.background: list[SippProcess] = []

    def _argv(
        self,
        scenario: str,
        target: str | None,
        extra: tuple[str, ...],
        *,
        calls: int,
        rate: float,
        timeout: float,
        transport: str,
        local_port: int | None,
        service: str | None,
        users: list[str] | None,
        trace_msg: bool,
        workdir: Path,
    ) -> tuple[list[str], Path | None]:
        if local_port is None:
            local_port = free_port()
        argv = [
            self.sipp, "-sf", str(SCENARIOS / scenario),
            "-i", LOOPBACK, "-p", str(local_port),
            "-t", "u1" if transport == "udp" else "t1",
            "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000",
            "-key", "contact_transport", transport,
            "-nostdin",
            "-timeout", f"{max(1, int(timeout))}s", "-timeout_error",
            "-recv_timeout", "10000",   # one lost message fails its call, not the whole run
            "-max_recv_loops", "10000",
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            "-trace_stat", "-stf", str(workdir / "stats.csv"), "-fd", "1",
            "-trace_screen", "-screen_file", str(workdir / "screen.log"),
        ]  # fmt: skip
        message_log: Path | None = None
        if trace_msg:
            message_log = workdir / "messages.log"
            argv += ["-trace_msg", "-message_file", str(message_log)]
        if service is not None:
            argv += ["-s", service]
        if users is not None:
            inf = workdir / "users.csv"
            inf.write_text("SEQUENTIAL\n" + "".join(f"{u}\n" for u in users))
            argv += ["-inf", str(inf)]
        argv += list(extra)
        if target is not None:
            argv.append(target)
        return argv, message_log

    def _workdir(self, scenario: str) -> Path:
        self.count += 1
        workdir = self.tmp_path / f"sipp{self.count:02d}-{scenario.removesuffix('.xml')}"
        workdir.mkdir()
        return workdir

    def run(
        self,
        scenario: str,
        target: str | None,
        *extra: str,
        calls: int = 1,
        rate: float = 10,
        timeout: float = 30,
        transport: str = "udp",
        local_port: int | None = None,
        service: str | None = None,
        users: list[str] | None = None,
        trace_msg: bool = False,
    ) -> SippResult:
        """Run a UAC scenario against ``target`` ("127.0.0.1:port") to its end (bounded)."""
        workdir = self._workdir(scenario)
        argv, message_log = self._argv(
            scenario,
            target,
            extra,
            calls=calls,
            rate=rate,
            timeout=timeout,
            transport=transport,
            local_port=local_port,
            service=service,
            users=users,
            trace_msg=trace_msg,
            workdir=workdir,
        )
        with open(workdir / "stdout.log", "wb") as out:
            proc = subprocess.Popen(
                argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
            try:
                proc.wait(timeout + 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return _collect(scenario, int(proc.returncode), workdir, message_log)

    def start(
        self,
        scenario: str,
        *extra: str,
        calls: int = 1,
        timeout: float = 30,
        transport: str = "udp",
        local_port: int,
        trace_msg: bool = False,
    ) -> SippProcess:
        """Start a UAS scenario listening on 127.0.0.1:local_port; it ends after ``calls``."""
        workdir = self._workdir(scenario)
        argv, message_log = self._argv(
            scenario,
            None,
            extra,
            calls=calls,
            rate=10,
            timeout=timeout,
            transport=transport,
            local_port=local_port,
            service=None,
            users=None,
            trace_msg=trace_msg,
            workdir=workdir,
        )
        with open(workdir / "stdout.log", "wb") as out:
            proc = subprocess.Popen(
                argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        handle = SippProcess(scenario, proc, workdir, timeout + 15, message_log)
        self.background.append(handle)
        _wait_listening(proc, local_port, transport)
        return handle

    def close(self) -> None:
        for handle in self.background:
            handle.stop()


def _wait_listening(proc: subprocess.Popen[bytes], port: int, transport: str) -> None:
    """Wait (bounded, 5 s) until SIPp holds its socket: the port no longer binds."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                return
        time.sleep(0.02)
