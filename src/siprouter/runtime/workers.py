"""Worker processes: fork N workers on one SIP port and supervise them.

The main process has already loaded the configuration and the routing script (failing early);
:func:`supervise` forks the workers before any event loop exists, then only waits for signals
and dead children:

- SIGTERM / SIGINT: SIGTERM to every worker, wait (bounded, :data:`STOP_TIMEOUT`), SIGKILL what
  is left, exit 0 when every worker stopped with status 0;
- SIGHUP: forwarded to every worker (each reloads its script);
- a worker that dies is logged and started again (with a growing delay when it keeps dying
  young, so a crash loop does not spin a core);
- a worker that cannot start the first time (bind, database) stops the whole node: exit 1.

Each worker gets ``PR_SET_PDEATHSIG`` = SIGTERM, so no worker outlives a main process killed with
SIGKILL. Workers report "started" by writing one byte to a pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import secrets
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NoReturn

from ..transport import steering
from ..transport.manager import open_listen_socket
from ..transport.spec import Listener, ListenSpec

__all__ = [
    "STOP_TIMEOUT", "START_TIMEOUT", "bind_udp_groups", "close_groups", "exit_process",
    "resolve_ports", "supervise",
]

log = logging.getLogger("siprouter.workers")

#: seconds the workers get to start (bind, load the location table) before the node gives up
START_TIMEOUT = 30.0
#: seconds between SIGTERM and SIGKILL at shutdown
STOP_TIMEOUT = 8.0
_RESTART_MIN = 0.2
_RESTART_MAX = 10.0
_YOUNG = 5.0  # a worker that dies younger than this makes the next restart wait longer

_PR_SET_PDEATHSIG = 1

#: (index, count, node name, ready fd) -> exit status; runs in the forked child
WorkerMain = Callable[[int, int, str, int], int]


def resolve_ports(specs: list[ListenSpec]) -> list[ListenSpec]:
    """Give listens on port 0 one real port, so every worker binds the same one."""
    out = []
    for spec in specs:
        if spec.port == 0:
            kind = socket.SOCK_DGRAM if spec.proto == "udp" else socket.SOCK_STREAM
            with socket.socket(spec.family, kind) as s:
                s.bind((spec.host, 0))
                spec = replace(spec, port=int(s.getsockname()[1]))
        out.append(spec)
    return out


def bind_udp_groups(specs: list[ListenSpec], count: int,
                    steer: bool = True) -> dict[int, list[socket.socket]]:
    """Bind ``count`` sockets (SO_REUSEPORT) for every UDP listen, worker 0's first.

    Returns {position in ``specs``: [socket of worker 0, of worker 1, ...]}. The supervisor
    keeps them open for the life of the node, so each socket keeps its slot in the port's
    group and a restarted worker takes its predecessor's socket. With ``steer`` the group gets
    the program that delivers a response to the worker its Via branch names
    (transport.steering); a kernel that refuses it leaves the hash alone, with a warning.
    Raises OSError naming the listen that could not be bound (nothing is left open)."""
    groups: dict[int, list[socket.socket]] = {}
    try:
        for i, spec in enumerate(specs):
            if spec.proto != "udp":
                continue
            socks = groups[i] = [open_listen_socket(spec, reuse_port=True)]
            port = int(socks[0].getsockname()[1])
            spec = replace(spec, port=port)  # port 0: the others join the first one's port
            for _ in range(count - 1):
                socks.append(open_listen_socket(spec, reuse_port=True))
            if steer and count > 1:
                via = Listener.bound(spec, port).hostport()  # what our Via says
                try:
                    steering.attach(socks[0], steering.response_program([via], count))
                except OSError as exc:
                    log.warning("%s: responses not steered to their workers (%s); the "
                                "workers hand them over", spec, exc)
    except BaseException:
        close_groups(groups)
        raise
    return groups


def close_groups(groups: dict[int, list[socket.socket]]) -> None:
    """Close every socket of :func:`bind_udp_groups` (in this process)."""
    for socks in groups.values():
        for s in socks:
            s.close()


def _set_pdeathsig() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


class _Worker:
    __slots__ = ("deaths", "index", "pid", "ready", "ready_fd", "restart_at", "started")

    def __init__(self, index: int) -> None:
        self.index = index
        self.pid = 0
        self.ready = False
        self.ready_fd = -1
        self.started = 0.0
        self.deaths = 0
        self.restart_at: float | None = None


class _Supervisor:
    def __init__(self, count: int, worker_main: WorkerMain) -> None:
        self.count = count
        self.worker_main = worker_main
        self.node = f"{os.getpid()}.{secrets.token_hex(4)}"
        self.workers = [_Worker(i) for i in range(count)]
        self.signals: list[int] = []
        self.stopping = False
        self.failed = False
        self.wake_r = -1
        self.wake_w = -1
        self.started_once = False
        self.stop_deadline = 0.0

    # -- processes --------------------------------------------------------------------------------
    def spawn(self, w: _Worker) -> None:
        r, wr = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(r)
                self._child_setup()
                code = self.worker_main(w.index, self.count, self.node, wr)
            except BaseException:
                with contextlib.suppress(Exception):
                    log.exception("worker %d failed", w.index)
            finally:
                exit_process(code)
        os.close(wr)
        os.set_blocking(r, False)
        w.pid = pid
        w.ready = False
        w.ready_fd = r
        w.started = time.monotonic()
        w.restart_at = None
        log.info("worker %d started (pid %d)", w.index, pid)

    def _child_setup(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd in (self.wake_r, self.wake_w):
            if fd >= 0:
                os.close(fd)
        for other in self.workers:
            if other.ready_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(other.ready_fd)
        _set_pdeathsig()
        if os.getppid() == 1:  # the main process is already gone
            os._exit(1)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for w in self.workers:
                if w.pid == pid:
                    self._died(w, status)
                    break

    def _died(self, w: _Worker, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        pid, w.pid = w.pid, 0
        if w.ready_fd >= 0:
            os.close(w.ready_fd)
            w.ready_fd = -1
        if self.stopping:
            if code != 0:
                log.warning("worker %d exited with status %d", w.index, code)
                self.failed = True
            return
        if not w.ready and not self.started_once:
            log.error("worker %d could not start (status %d)", w.index, code)
            self.failed = True
            self.stop()
            return
        age = time.monotonic() - w.started
        w.deaths = w.deaths + 1 if age < _YOUNG else 0
        delay = min(_RESTART_MAX, _RESTART_MIN * (2 ** min(w.deaths, 8)))
        what = f"signal {-code}" if code < 0 else f"status {code}"
        log.error("worker %d (pid %d) died with %s after %.1fs; restarting in %.1fs",
                  w.index, pid, what, age, delay)
        w.restart_at = time.monotonic() + delay

    def signal_all(self, sig: int) -> None:
        for w in self.workers:
            if w.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, sig)

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + STOP_TIMEOUT
            self.signal_all(signal.SIGTERM)

    # -- main loop --------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def run(self) -> int:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        old_fd = signal.set_wakeup_fd(self.wake_w)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        old = {s: signal.signal(s, self._on_signal) for s in handled}
        try:
            for w in self.workers:
                self.spawn(w)
            start_deadline = time.monotonic() + START_TIMEOUT
            while True:
                self._step()
                if self.stopping and not any(w.pid for w in self.workers):
                    break
                if not self.started_once:
                    if all(w.ready for w in self.workers):
                        self.started_once = True
                        log.info("siprouter started with %d workers", self.count)
                    elif time.monotonic() > start_deadline and not self.stopping:
                        log.error("workers did not start within %.0fs", START_TIMEOUT)
                        self.failed = True
                        self.stop()
                if self.stopping and time.monotonic() > self.stop_deadline:
                    for w in self.workers:
                        if w.pid:
                            log.warning("worker %d ignored SIGTERM; killing it", w.index)
                    self.signal_all(signal.SIGKILL)
                    self.failed = True
                    self.stop_deadline = time.monotonic() + STOP_TIMEOUT
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            signal.set_wakeup_fd(old_fd)
            os.close(self.wake_r)
            os.close(self.wake_w)
        log.info("siprouter stopped")
        return 1 if self.failed else 0

    def _step(self) -> None:
        now = time.monotonic()
        timeout = 1.0
        for w in self.workers:
            if w.restart_at is not None:
                timeout = max(0.0, min(timeout, w.restart_at - now))
        fds = [self.wake_r] + [w.ready_fd for w in self.workers if w.ready_fd >= 0]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            readable = []
        if self.wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_r, 4096)
        for w in self.workers:
            if w.ready_fd >= 0 and w.ready_fd in readable:
                try:
                    data = os.read(w.ready_fd, 16)
                except BlockingIOError:
                    data = b"?"
                except OSError as exc:  # pragma: no cover
                    if exc.errno != errno.EAGAIN:
                        data = b""
                    else:
                        data = b"?"
                if data.startswith(b"R"):
                    w.ready = True
                if not data or data.startswith(b"R"):
                    os.close(w.ready_fd)
                    w.ready_fd = -1
        sigs, self.signals = self.signals, []
        for sig in sigs:
            if sig in (signal.SIGTERM, signal.SIGINT):
                log.info("stopping (%s)", signal.Signals(sig).name)
                self.stop()
            elif sig == signal.SIGHUP:
                log.info("SIGHUP: forwarded to the workers")
                self.signal_all(signal.SIGHUP)
        self.reap()
        if not self.stopping:
            now = time.monotonic()
            for w in self.workers:
                if w.pid == 0 and w.restart_at is not None and now >= w.restart_at:
                    self.spawn(w)


def exit_process(code: int) -> NoReturn:
    """End this process once its server is closed (every store closed, every record written):
    logs and stdio flushed, then ``os._exit``. The interpreter's own teardown would free every
    object one at a time, which after a load (transactions kept for 32 s, dialogs, a location
    table) took seconds of CPU: a server capped at a fifth of a core took 4 s to exit after
    SIGTERM, where the rest of the stop took 6 ms. Each worker ends so, and a server of one
    worker."""
    with contextlib.suppress(Exception):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def supervise(count: int, worker_main: WorkerMain) -> int:
    """Fork ``count`` workers running ``worker_main`` and supervise them until SIGTERM/SIGINT.

    Returns the exit status of the node: 0 after a clean stop, 1 when the workers could not
    start or did not stop cleanly."""
    return _Supervisor(count, worker_main).run()
