"""Process lifecycle: build every layer from the settings, run the loop, stop cleanly.

``run(settings)`` loads the routing script first (a script that does not load stops the server
before it binds anything: clear message, exit status 1), opens the location store, binds the
listeners, then serves until SIGTERM/SIGINT. Expired bindings are swept once a second.

With ``[server] workers`` (``--workers``) above 1 the main process forks that many workers
(``runtime.workers``) and supervises them (it writes the pid file and forwards SIGHUP); each
worker builds its own :class:`Server`, bound with SO_REUSEPORT and joined to its peers
(``runtime.ipc``). 0 means one worker per core.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from ..modules import instances as module_instances
from ..proxy.routing import LocalAddresses
from ..scripting.events import check_event_callbacks, raise_event
from ..scripting.loader import ScriptError, load_script
from ..transaction.layer import TransactionLayer
from ..transaction.timers import TimerSettings
from ..transport.local import interface_addresses, is_wildcard, wildcard_advertise
from ..transport.manager import TransportManager
from ..transport.spec import ListenSpec, TransportSettings
from .core import Core
from .ipc import Peers, ReplicatedLocation
from .workers import bind_udp_groups, close_groups, exit_process, resolve_ports, supervise

log = logging.getLogger("siprouter")

__all__ = ["Server", "load_configured_script", "run"]

# How often expired bindings are removed (Kamailio usrloc timer_interval defaults to 60 s; we
# sweep more often because a sweep of an in-memory table is cheap).
SWEEP_INTERVAL = 1.0


class Server:
    """All layers of one siprouter process."""

    def __init__(self, settings: Any, script: Any, peers: Peers | None = None,
                 listen: list[ListenSpec] | None = None,
                 bound: dict[int, socket.socket] | None = None) -> None:
        self.settings = settings
        self.script = script
        #: the other workers of this node (None: a single process)
        self.peers = peers
        #: listens to bind instead of ``settings.server.listen`` (ports already resolved)
        self.listen = listen
        #: sockets already bound for some of ``listen`` (by position): a worker's UDP sockets
        self.bound = bound
        self.core: Core | None = None
        self.transport: TransportManager | None = None
        self.location: Any = None
        self._stop = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from ..modules.location import Location
        from ..modules.registrar import Registrar
        from ..storage.db import open_location_store, parse_db_url

        s = self.settings
        loop = asyncio.get_running_loop()
        # memory://: the location table itself is the only copy (no store to write through to)
        store = None if parse_db_url(s.database.url).scheme == "memory" \
            else open_location_store(s.database.url)
        reg = s.registrar
        peers = self.peers
        if peers is None:
            self.location = Location(store, use_domain=reg.use_domain)
        else:
            # worker 0 alone deletes expired rows from the shared store
            self.location = ReplicatedLocation(store, peers, use_domain=reg.use_domain,
                                               sweeps_store=peers.index == 0)
        n = self.location.load(time.time())
        log.info("location: %d bindings loaded from %s", n, s.database.url)
        registrar = Registrar(self.location, reg)
        t = s.timers
        tl = TransactionLayer(TimerSettings(t1=t.t1, t2=t.t2, t4=t.t4))
        me = LocalAddresses()
        for d in s.server.domains:
            me.add_domain(d)
        for a in getattr(s.server, "aliases", []) or []:
            me.add_domain(a.rsplit(":", 1)[0] if a.count(":") == 1 else a)
        core = Core(
            transport=None, tl=tl, script=self.script, location=self.location,
            registrar=registrar, me=me, server_header=s.sip.user_agent,
            fr_timeout=t.fr_timeout, fr_inv_timeout=t.fr_inv_timeout,
            max_message_size=s.sip.max_message_size, loop=loop,
        )
        tcp = s.tcp
        transport = TransportManager(core.on_message, TransportSettings(
            max_message_size=s.sip.max_message_size, tcp_idle_timeout=tcp.idle_timeout,
            tcp_max_connections=tcp.max_connections, tcp_connect_timeout=tcp.connect_timeout,
            reuse_port=peers is not None,
        ))
        core.transport = transport
        transport.on_reject = core.on_reject
        self.core = core
        # module instances from [modules.*]; a bad setting stops the start here
        core.modules = module_instances.build_instances(s, peers)
        module_instances.start(core.modules, time.time())
        self.transport = transport
        if peers is not None:
            core.cluster = peers
            core.dispatch_udp_requests = (
                getattr(s.server, "udp_dispatch", "source") == "call-id")
            core.branch_prefix = peers.prefix
            transport.on_connection = peers.connection_changed
            transport.forward = peers.forward_tcp
        specs = _listen_specs(s, self.listen)
        await transport.start(specs, self.bound)
        core.refresh_addresses()
        for lst in transport.listeners:
            if is_wildcard(lst.host):
                # every address of this host is "myself" (Kamailio binds each of them)
                for addr in interface_addresses(lst.sock_family):
                    core.me.add_host(addr)
        if peers is not None:
            peers.attach(loop, core, transport)
        for lst in transport.listeners:
            log.info("listening on %s", lst)
        # module events for the script (Kamailio's htable event_callback: "htable:mod-init")
        raise_event(core, "htable", "htable:mod-init", s.modules)
        module_instances.started(core.modules)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                if self.core is not None:
                    module_instances.tick(self.core, self.core.now(), time.time())
                gone = self.location.sweep(time.time())
                if gone:
                    log.debug("location: %d expired bindings removed", len(gone))
            except Exception:
                log.exception("location sweep failed")

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> bool:
        """Load the routing script again (SIGHUP / ``siprouter reload``).

        Messages already in flight finish with the old script: their callbacks were bound to
        its functions when they were relayed. A script that fails to load leaves the old one
        in place and the reason in the log. Returns whether the new script is in use."""
        try:
            script = load_configured_script(self.settings)
        except ScriptError as e:
            log.error("reload failed, keeping the running script: %s", e)
            return False
        self.script = script
        if self.core is not None:
            self.core.script = script
        log.info("routing script reloaded from %s", getattr(script, "path", "?"))
        return True

    async def serve(self) -> None:
        await self._stop.wait()

    async def close(self) -> None:
        if self.core is not None and self.core.modules:
            module_instances.stop(self.core.modules, time.time())
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.transport is not None:
            await self.transport.stop()
        if self.peers is not None:
            log.info("worker %d hand-offs: %s", self.peers.index,
                     " ".join(f"{k}={v}" for k, v in self.peers.stats.items()))
            if self.core is not None:
                log.info("worker %d traffic: %s", self.peers.index,
                         " ".join(f"{k}={v}" for k, v in self.core.stats.items()))
            self.peers.close()
        if self.location is not None and self.location.store is not None:
            try:
                self.location.store.close()
            except Exception:
                log.exception("closing the location store failed")


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path.

    Proxy state is freed by reference counting (the runtime breaks its reference cycles when a
    transaction ends), so the cyclic collector finds little; but with tens of thousands of live
    transactions each full pass walks every object, which measured here as a large share of the
    CPU per call. Objects that live for the whole run (code, settings, script) are frozen out of
    the collector, and the young generation is collected less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _main(settings: Any, script: Any, peers: Peers | None = None,
                listen: list[ListenSpec] | None = None, ready_fd: int = -1,
                bound: dict[int, socket.socket] | None = None) -> int:
    server = Server(settings, script, peers, listen, bound)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    if peers is None:
        _write_pid_file(settings)
    try:
        await server.start()
    except Exception as e:
        log.error("cannot start: %s", e)
        await server.close()
        return 1
    if ready_fd >= 0:
        os.write(ready_fd, b"R")
        os.close(ready_fd)
    _tune_gc()
    log.info("siprouter started")
    try:
        await server.serve()
    finally:
        log.info("stopping")
        await server.close()
    return 0


def _listen_specs(settings: Any, listen: list[ListenSpec] | None = None) -> list[ListenSpec]:
    """``listen`` (default: ``[server] listen`` with ``[server] advertise`` applied,
    ``ServerSettings.listen_specs``), with an address for every wildcard listen that
    advertises none."""
    specs = settings.server.listen_specs() if listen is None else listen
    out = []
    for sp in specs:
        if sp.advertise_host is None and is_wildcard(sp.host):
            # 0.0.0.0 in a Via or Record-Route would send the peer's messages to itself
            wide = sp
            sp = sp.with_advertise(wildcard_advertise(sp.family), None)
            log.info("listen %s advertises %s (the address of the default route; set "
                     "advertise to choose another)", wide, sp.advertise_host)
        out.append(sp)
    return out


def load_configured_script(settings: Any) -> Any:
    """The routing script of ``settings`` with its loaded modules and defines."""
    srv = settings.server
    script = load_script(srv.script, modules=getattr(srv, "modules", None),
                         defines=getattr(srv, "defines", None))
    # event callbacks named in [modules.*] settings must be functions of the script
    check_event_callbacks(script, getattr(settings, "modules", None))
    return script


def _write_pid_file(settings: Any) -> None:
    pid_file = getattr(settings.server, "pid_file", None)
    if pid_file:
        with open(pid_file, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")


def _runner() -> asyncio.Runner:
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        return asyncio.Runner()


def worker_count(settings: Any) -> int:
    """``[server] workers``; 0 (or absent) means one per core."""
    n = int(getattr(settings.server, "workers", 0) or 0)
    return n if n > 0 else (os.cpu_count() or 1)


def run(settings: Any) -> int:
    """Run a server until SIGTERM/SIGINT; returns the process exit status (a server of one
    worker ends the process itself once closed, see ``workers.exit_process``)."""
    _setup_logging(getattr(settings.server, "log_level", "info"))
    try:
        script = load_configured_script(settings)
    except ScriptError as e:
        print(f"siprouter: cannot load the routing script: {e}", file=sys.stderr)
        return 1
    n = worker_count(settings)
    if n == 1:
        with _runner() as runner:
            code = runner.run(_main(settings, script))
        exit_process(code)

    specs = resolve_ports(_listen_specs(settings))
    try:
        groups = bind_udp_groups(specs, n, bool(getattr(settings.server, "udp_steering", True)))
    except OSError as e:
        log.error("cannot start: %s", e)
        return 1

    def worker_main(index: int, count: int, node: str, ready_fd: int) -> int:
        fmt = f"%(asctime)s %(levelname)s [w{index}] %(name)s: %(message)s"
        for h in logging.getLogger().handlers:
            h.setFormatter(logging.Formatter(fmt))
        # this worker's UDP sockets; the other workers' copies are closed here (the
        # supervisor keeps its own)
        bound = {}
        for pos, socks in groups.items():
            for j, sock in enumerate(socks):
                if j == index:
                    bound[pos] = sock
                else:
                    sock.close()
        peers = Peers(index, count, node)
        peers.bind()  # before the location table is loaded: no change is missed
        with _runner() as runner:
            return runner.run(_main(settings, script, peers, specs, ready_fd, bound))

    # modules whose process-wide state the workers must share are imported before the fork
    # (auth's default nonce key: any worker must accept the nonces another one issued)
    import siprouter.modules.auth  # noqa: F401

    _write_pid_file(settings)  # the supervisor's pid: SIGHUP to it reaches every worker
    try:
        return supervise(n, worker_main)
    finally:
        close_groups(groups)
