"""Processes of the benchmark: the servers under test, SIPp, and CPU accounting from /proc.

Everything listens on 127.0.0.1 only; every wait is bounded; every process started here is
stopped by its own process group id (each server and each SIPp is started in a new session,
so a server's worker processes share its group and are stopped with it).
"""

from __future__ import annotations

import csv
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cgroups import PERIOD_US, CgroupError, CpuCaps

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SCENARIOS = BENCH_DIR / "scenarios"
KAMAILIO_DIR = BENCH_DIR / "kamailio"
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
KAMAILIO_SQL = Path("/usr/share/kamailio/db_sqlite")
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

# Debian packages the benchmark needs (apt-get install).
APT_PACKAGES = ("kamailio", "kamailio-lua-modules", "kamailio-sqlite-modules", "sip-tester")

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

SERVER_KINDS = ("siprouter", "kamailio-native", "kamailio-kemi")


# ---------------------------------------------------------------------------------------------
# installation


def kamailio_missing() -> list[str]:
    """What of Kamailio (binary, Lua and SQLite modules) is not installed; [] when complete."""
    missing: list[str] = []
    if shutil.which("kamailio") is None:
        missing.append("kamailio")
    if not (KAMAILIO_MODULES / "app_lua.so").exists():
        missing.append("kamailio-lua-modules")
    if not (KAMAILIO_MODULES / "db_sqlite.so").exists():
        missing.append("kamailio-sqlite-modules")
    return missing


def ensure_installed(log: list[str]) -> str | None:
    """Install the missing Debian packages (apt-get update first). None when everything is
    present afterwards, else the reason why not."""
    missing = kamailio_missing()
    if shutil.which("sipp") is None:
        missing.append("sip-tester")
    if not missing:
        return None
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None:
            return f"missing {' '.join(missing)} and not root (no sudo) to install them"
        prefix = [sudo, "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        [*prefix, "apt-get", "update", "-q"],
        [*prefix, "apt-get", "install", "-y", "-q", *missing],
    ):
        log.append("$ " + " ".join(argv))
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(argv)} failed: {exc}"
        if done.returncode != 0:
            return f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-400:]}"
    still = kamailio_missing()
    if shutil.which("sipp") is None:
        still.append("sip-tester")
    return f"still missing after apt-get: {' '.join(still)}" if still else None


# ---------------------------------------------------------------------------------------------
# ports, probes


def free_port() -> int:
    """A free UDP port on 127.0.0.1 (picked by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _request(
    method: str, ruri: str, local_port: int, call_id: str, extra: str = "", to: str = ""
) -> bytes:
    to = to or ruri
    return (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK{call_id};rport\r\n"
        f"From: <{to}>;tag={call_id}\r\n"
        f"To: <{to}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def udp_transaction(
    port: int,
    method: str,
    ruri: str,
    *,
    extra: str = "",
    to: str = "",
    local_port: int = 0,
    timeout: float = 1.0,
) -> int:
    """Send one request over UDP to 127.0.0.1:port (re-sent every 250 ms) and return the
    status of the first final response; TimeoutError when none comes within ``timeout``."""
    call_id = f"bench{random.getrandbits(48):012x}"
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, local_port))
        data = _request(method, ruri, s.getsockname()[1], call_id, extra, to)
        next_send = 0.0
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                s.sendto(data, (LOOPBACK, port))
                next_send = now + 0.25
            s.settimeout(max(0.01, min(next_send, deadline) - now))
            try:
                answer = s.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                continue
            if answer.startswith(b"SIP/2.0 ") and call_id.encode() in answer:
                status = int(answer[8:11])
                if status >= 200:
                    return status
    raise TimeoutError(f"no final answer to {method} on 127.0.0.1:{port} within {timeout}s")


# ---------------------------------------------------------------------------------------------
# CPU accounting


def group_members(pgid: int) -> dict[int, int]:
    """{pid: utime + stime in clock ticks} of every live process whose process group is
    ``pgid`` (/proc/<pid>/stat fields 14, 15 and 5)."""
    members: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # the process ended meanwhile
        rest = stat[stat.rfind(b")") + 2 :].split()
        # rest[0] = state (field 3), rest[2] = pgrp (5), rest[11] = utime (14), rest[12] = stime
        if len(rest) > 12 and int(rest[2]) == pgid:
            members[int(entry.name)] = int(rest[11]) + int(rest[12])
    return members


def group_cpu(pgid: int) -> tuple[int, int]:
    """(utime + stime in clock ticks, process count) summed over the process group ``pgid``."""
    members = group_members(pgid)
    return sum(members.values()), len(members)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM the process group led by ``proc`` (which was started in a new session), wait
    (bounded), then SIGKILL the group. Returns the leader's exit status."""
    pgid = proc.pid
    if proc.poll() is None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # whatever is left of the group (workers, children) goes now
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(5)
    for _ in range(50):  # bounded: wait until no member of the group remains
        if group_cpu(pgid)[1] == 0:
            break
        time.sleep(0.05)
    return proc.returncode


# ---------------------------------------------------------------------------------------------
# the servers under test


class Server:
    """One server under test on 127.0.0.1:port, started in its own process group."""

    kind: str = ""

    def __init__(self, workdir: Path, workers: int, mode: str, persist: bool = True,
                 cpu_cap: float | None = None, count_handoffs: bool = False,
                 cpu_period_us: int = PERIOD_US) -> None:  # fmt: skip
        self.workdir = workdir
        self.workers = workers
        self.mode = mode  # 'default' | 'relay' | 'auth'
        # bindings persisted to SQLite before the REGISTER is answered (Kamailio: usrloc
        # db_mode 1, write-through), or kept in memory only (Kamailio: db_mode 0)
        self.persist = persist
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.kind}.log"
        self.note = ""
        # each process of the server in a cgroup of its own with this share of a core
        self.cpu_cap = cpu_cap
        self.cpu_period_us = cpu_period_us  # the CFS period of those groups
        self.caps: CpuCaps | None = None
        # log what is needed to count the datagrams handed between workers (:meth:`handoffs`)
        self.count_handoffs = count_handoffs

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self, users: list[tuple[str, str]]) -> None:
        """Create what the server needs on disk before it starts."""

    def start(self, users: list[tuple[str, str]]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare(users)
        argv = self.command()
        with open(self.log_path, "ab") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with status {self.proc.returncode} while starting\n"
                    + self.log_tail()
                )
            try:
                udp_transaction(self.port, "OPTIONS", f"sip:{LOOPBACK}:{self.port}", timeout=0.5)
            except (TimeoutError, OSError) as exc:
                last = str(exc)
                continue
            if self.cpu_cap is not None:
                self._cap_processes(self.cpu_cap)
            return
        self.stop()
        raise RuntimeError(
            f"{self.kind} not ready within {READY_TIMEOUT}s: {last}\n{self.log_tail()}"
        )

    def _cap_processes(self, cap: float) -> None:
        """Every process of the (ready) server into a cgroup of its own (bench/cgroups.py)."""
        assert self.proc is not None
        try:
            self.caps = CpuCaps(cap, period_us=self.cpu_period_us)
            for pid in sorted(group_members(self.proc.pid)):
                self.caps.add(pid)
        except (CgroupError, OSError) as exc:
            self.stop()
            raise RuntimeError(f"cannot cap the CPU of {self.kind}: {exc}") from exc

    def cpu(self) -> tuple[int, int]:
        assert self.proc is not None
        return group_cpu(self.proc.pid)

    def cpu_by_process(self) -> dict[int, int]:
        """{pid: utime + stime in clock ticks} of every process of the server."""
        assert self.proc is not None
        return group_members(self.proc.pid)

    def handoffs(self) -> dict[str, dict[str, int]]:
        """Per worker, the counters of datagrams handed between workers, read after
        :meth:`stop` (empty when the server does not hand any over or does not say)."""
        return {}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_idle(
        self, max_seconds: float = 20.0, window: float = 0.5, busy: float = 0.05
    ) -> float:
        """Wait (bounded) until the server uses under ``busy`` of a core over ``window``
        seconds, so that one run's backlog (retransmissions, timers of aborted calls) does
        not land in the next run. Returns the seconds waited."""
        t_start = time.monotonic()
        while self.alive() and time.monotonic() - t_start < max_seconds:
            c0, _ = self.cpu()
            time.sleep(window)
            c1, _ = self.cpu()
            if (c1 - c0) / CLK_TCK < busy * window:
                break
        return time.monotonic() - t_start

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        try:
            return stop_group(self.proc)
        finally:
            if self.caps is not None:
                self.caps.release()
                self.caps = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(text[-lines:])


def siprouter_supports_workers() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "siprouter", "run", "--help"],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT,
    )  # fmt: skip
    return "--workers" in done.stdout


class SiprouterServer(Server):
    kind = "siprouter"
    workers_supported: bool | None = None

    def prepare(self, users: list[tuple[str, str]]) -> None:
        if self.mode != "auth":
            return
        # the same modparams as bench/kamailio/common.cfg's WITH_AUTH block
        (self.workdir / "auth.toml").write_text(
            "[server]\n"
            'modules = ["tm", "tmx", "sl", "rr", "pv", "maxfwd", "usrloc", "registrar",'
            ' "textops", "siputils", "sanity", "corex", "kex", "xlog", "auth", "auth_db"]\n'
            "[modules.auth_db]\n"
            "calculate_ha1 = true\n"
            'password_column = "password"\n'
            "[modules.auth]\n"
            "nonce_expire = 300\n"
        )
        from siprouter.storage.credentials import make_subscriber, open_credential_store

        db = self.workdir / "siprouter.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        store = open_credential_store(f"sqlite:///{db}")
        try:
            for u, p in users:
                store.add(make_subscriber(u, LOOPBACK, p))
        finally:
            store.close()

    def command(self) -> list[str]:
        argv = [
            sys.executable, "-m", "siprouter", "run",
            "--listen", f"udp:{LOOPBACK}:{self.port}",
            "--db", f"sqlite:///{self.workdir / 'siprouter.sqlite'}" if self.persist
            else "memory://",
            "--domain", LOOPBACK,
            # at info, each worker logs its hand-off counters when it stops; nothing is logged
            # per message at info but failures (a branch without a final response, ...)
            "--log-level", "info" if self.count_handoffs else "warning",
        ]  # fmt: skip
        if self.mode == "relay":
            argv += ["--script", str(BENCH_DIR / "scripts" / "relay.py")]
        elif self.mode == "auth":
            argv += ["--config", str(self.workdir / "auth.toml"),
                     "--script", str(BENCH_DIR / "scripts" / "auth.py")]  # fmt: skip
        if SiprouterServer.workers_supported is None:
            SiprouterServer.workers_supported = siprouter_supports_workers()
        if SiprouterServer.workers_supported:
            argv += ["--workers", str(self.workers)]
        elif self.workers != 1:
            self.note = "siprouter has no --workers option yet: ran 1 process"
        return argv

    def handoffs(self) -> dict[str, dict[str, int]]:
        """``{"w0": {"responses_out": ..., ...}, ...}`` from the lines ``worker N hand-offs:
        k=v ...`` each worker logs at info when it stops (none with one worker)."""
        out: dict[str, dict[str, int]] = {}
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return out
        for m in re.finditer(r"worker (\d+) hand-offs: (.*)$", text, re.MULTILINE):
            counts = (item.partition("=") for item in m.group(2).split())
            out[f"w{m.group(1)}"] = {k: int(v) for k, _, v in counts if v.isdigit()}
        return out


class KamailioServer(Server):
    """Kamailio as run in production: the fast allocator (-x fm -X fm), large shared memory,
    as many UDP children as siprouter has workers, foreground (-DD), logging to stderr (-E)."""

    kind = "kamailio-native"
    cfg = "native.cfg"
    shm_mb = 2048
    pkg_mb = 64

    def prepare(self, users: list[tuple[str, str]]) -> None:
        db = self.workdir / "kamailio.sqlite"
        if db.exists():
            db.unlink()
        con = sqlite3.connect(db)
        try:
            con.execute("PRAGMA journal_mode=WAL")  # persistent in the file, like siprouter's
            for name in ("standard-create.sql", "usrloc-create.sql", "auth_db-create.sql"):
                con.executescript((KAMAILIO_SQL / name).read_text())
            if self.mode == "auth":
                con.executemany(
                    "INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
                    [(u, LOOPBACK, p) for u, p in users],
                )
            con.commit()
        finally:
            con.close()

    def command(self) -> list[str]:
        db = self.workdir / "kamailio.sqlite"
        argv = [
            "kamailio", "-f", str(KAMAILIO_DIR / self.cfg),
            "-DD", "-E",
            "-x", "fm", "-X", "fm",
            "-m", str(self.shm_mb), "-M", str(self.pkg_mb),
            "-n", str(self.workers),
            "-l", f"udp:{LOOPBACK}:{self.port}",
            "-Y", str(self.workdir),
            "-w", str(self.workdir),
            "-A", f'DBURL="sqlite:///{db}"',
            "-A", f'LUASCRIPT="{KAMAILIO_DIR / "kemi.lua"}"',
        ]  # fmt: skip
        if self.persist:
            argv += ["-A", "WITH_USRLOCDB"]
        if self.mode == "relay":
            argv += ["-A", "WITH_RELAY"]
        elif self.mode == "auth":
            argv += ["-A", "WITH_AUTH"]
        return argv


class KamailioKemiServer(KamailioServer):
    kind = "kamailio-kemi"
    cfg = "kemi.cfg"


def make_server(kind: str, workdir: Path, workers: int, mode: str, *, persist: bool,
                cpu_cap: float | None = None, count_handoffs: bool = False,
                cpu_period_us: int = PERIOD_US) -> Server:  # fmt: skip
    """A server of ``kind`` (one of SERVER_KINDS); see :class:`Server` for the options."""
    cls: type[Server] = {
        "siprouter": SiprouterServer,
        "kamailio-native": KamailioServer,
        "kamailio-kemi": KamailioKemiServer,
    }[kind]
    return cls(workdir, workers, mode, persist, cpu_cap, count_handoffs, cpu_period_us)


# ---------------------------------------------------------------------------------------------
# SIPp


@dataclass
class SippRun:
    """Outcome of one SIPp client run."""

    calls: int  # calls asked for (-m)
    successful: int
    failed: int
    returncode: int
    seconds: float  # wall time of the run
    errors: str = ""  # the first lines of SIPp's error log
    stats: dict[str, str] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        """Calls that did not succeed (failed or never completed)."""
        return max(0, self.calls - self.successful)

    @property
    def passed(self) -> bool:
        return self.successful > 0 and self.lost <= self.calls * 0.001


def _last_stat_row(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open(newline="", errors="replace") as f:
        rows = [row for row in csv.reader(f, delimiter=";") if row]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def sipp_base(
    scenario: str, local_port: int, workdir: Path, per_call_sockets: bool = False
) -> list[str]:
    """SIPp on one UDP socket, or with ``per_call_sockets`` one socket per call (``-t un``:
    every call from its own source port, as from many phones)."""
    transport = ["-t", "un", "-max_socket", "15000"] if per_call_sockets else ["-t", "u1"]
    return [
        "sipp", "-sf", str(SCENARIOS / scenario),
        "-i", LOOPBACK, "-p", str(local_port), *transport,
        "-nostdin", "-buff_size", "4194304",
        "-trace_err", "-error_file", str(workdir / "errors.log"),
    ]  # fmt: skip


def run_client(
    scenario: str,
    server_port: int,
    workdir: Path,
    *,
    rate: float,
    calls: int,
    keys: dict[str, str] | None = None,
    inf: Path | None = None,
    per_call_sockets: bool = False,
) -> SippRun:
    """Run a SIPp client scenario against 127.0.0.1:server_port: ``calls`` calls at ``rate``
    per second. Bounded: SIPp's own global timeout, and a hard kill after it."""
    workdir.mkdir(parents=True, exist_ok=True)
    duration = calls / rate
    global_timeout = int(duration + 15)
    argv = [
        *sipp_base(scenario, free_port(), workdir, per_call_sockets),
        "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000",
        "-timeout", f"{global_timeout}s", "-timeout_error",
        "-recv_timeout", "5000",        # a lost message fails its call after 5 s
        "-max_recv_loops", "100000", "-max_sched_loops", "100000",
        "-trace_stat", "-stf", str(workdir / "stats.csv"), "-fd", "3600",
    ]  # fmt: skip
    for k, v in (keys or {}).items():
        argv += ["-key", k, v]
    if inf is not None:
        argv += ["-inf", str(inf)]
    argv.append(f"{LOOPBACK}:{server_port}")
    t0 = time.monotonic()
    with open(workdir / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(global_timeout + 15)
        except subprocess.TimeoutExpired:
            stop_group(proc, 2)
    seconds = time.monotonic() - t0
    stats = _last_stat_row(workdir / "stats.csv")
    ok = int(stats.get("SuccessfulCall(C)", "0") or 0)
    failed = int(stats.get("FailedCall(C)", "0") or 0)
    err_path = workdir / "errors.log"
    errors = ""
    if err_path.exists():
        with err_path.open(errors="replace") as f:
            # SIPp writes its events without line breaks: keep the start, one event a line
            errors = f.read(1500).replace("\t", " ")
            errors = re.sub(r"(?<!^)(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ )", r"\n\1", errors)
    return SippRun(calls, ok, failed, int(proc.returncode), seconds, errors, stats)


class SippUas:
    """A SIPp UAS answering calls on 127.0.0.1:port until stopped."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [*sipp_base("uas_answer.xml", self.port, self.workdir), "-max_recv_loops", "100000"]
        with open(self.workdir / "stdout.log", "wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"SIPp UAS exited with {self.proc.returncode}: "
                + (self.workdir / "stdout.log").read_text(errors="replace")[-800:]
            )

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, 2)


def register_contact(server_port: int, user: str, contact_port: int) -> int:
    """REGISTER ``user`` at the server with a Contact at 127.0.0.1:contact_port, sent from that
    port (the server may keep the source as the binding's received address)."""
    extra = f"Contact: <sip:{user}@{LOOPBACK}:{contact_port}>\r\nExpires: 3600\r\n"
    return udp_transaction(
        server_port, "REGISTER", f"sip:{LOOPBACK}:{server_port}",
        extra=extra, to=f"sip:{user}@{LOOPBACK}", local_port=contact_port, timeout=3.0,
    )  # fmt: skip
