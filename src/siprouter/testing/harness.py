"""Public test helpers: a fake clock, an in-memory transport and a Core wired to them.

    h = Harness(script=my_module_or_object)
    h.receive(b"INVITE ...", src=("udp", "127.0.0.1", 5070))
    sent = h.take()                 # [(Endpoint, SipMessage), ...] sent since the last take()
    h.advance(32.0)                 # fire every timer due by then

Nothing here opens a socket or sleeps; the clock only moves when a test moves it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ..modules.location import Location
from ..modules.registrar import Registrar, RegistrarSettings
from ..proxy.routing import LocalAddresses
from ..runtime.core import Core
from ..sip.message import SipMessage, parse_message
from ..sip.types import Endpoint
from ..transaction.layer import TransactionLayer
from ..transaction.timers import TimerSettings
from ..transport.spec import Listener

__all__ = ["FakeClock", "FakeTransport", "Harness", "script_from"]


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


class FakeTransport:
    """Records what the core sends; listeners as a real one would have them."""

    def __init__(self, listeners: list[Listener]) -> None:
        self.listeners = listeners
        self.sent: list[tuple[Endpoint, bytes]] = []
        self.fail: set[tuple[str, int]] = set()  # destinations whose sends fail

    def send(
        self, dest: Endpoint, data: bytes, on_error: Callable[[Exception], None] | None = None,
        via: Any = None,
    ) -> None:
        if (dest.host, dest.port) in self.fail:
            if on_error is not None:
                on_error(ConnectionRefusedError(f"cannot reach {dest.hostport()}"))
            return
        self.sent.append((dest, data))


def script_from(
    request_route: Callable[[Any], Any], reply_route: Callable[[Any], Any] | None = None,
    **named: Callable[..., Any],
) -> Any:
    """A script object from plain functions (``named`` are callbacks resolvable by name)."""
    ns = SimpleNamespace(request_route=request_route, reply_route=reply_route, **named)

    def resolve(name: str) -> Callable[..., Any] | None:
        fn = getattr(ns, name, None)
        return fn if callable(fn) else None

    ns.resolve = resolve
    return ns


class Harness:
    """A Core on a fake transport and a fake clock (see the module docstring)."""

    def __init__(
        self, script: Any, *, host: str = "127.0.0.1", port: int = 5060,
        protos: tuple[str, ...] = ("udp", "tcp"), domains: tuple[str, ...] = (),
        timers: TimerSettings | None = None, registrar: RegistrarSettings | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.wall = FakeClock(1_800_000_000.0)
        listeners = [
            Listener(p, host, port, host, port,
                     socket.AF_INET6 if ":" in host else socket.AF_INET)
            for p in protos
        ]
        self.transport = FakeTransport(listeners)
        self.location = Location(use_domain=False)
        self.registrar = Registrar(self.location, registrar or RegistrarSettings())
        me = LocalAddresses()
        for d in domains:
            me.add_domain(d)
        self.tl = TransactionLayer(timers or TimerSettings())
        self.core = Core(
            transport=self.transport, tl=self.tl, script=script, location=self.location,
            registrar=self.registrar, me=me, clock=self.clock, wall_clock=self.wall,
        )
        self.core.refresh_addresses()

    def listener(self, proto: str = "udp") -> Listener:
        return next(lst for lst in self.transport.listeners if lst.proto == proto)

    def receive(self, data: bytes | str, src: tuple[str, str, int] = ("udp", "127.0.0.1", 5070),
                proto_listener: str | None = None) -> None:
        if isinstance(data, str):
            data = data.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        ep = Endpoint(*src)
        self.core.on_message(data, ep, self.listener(proto_listener or ep.proto))

    def take(self) -> list[tuple[Endpoint, SipMessage]]:
        out = [(d, parse_message(b, stream=d.proto != "udp")) for d, b in self.transport.sent]
        self.transport.sent.clear()
        return out

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """Move the clock forward, firing due timers along the way."""
        end = self.clock.t + seconds
        while True:
            d1 = self.tl.next_deadline()
            d2 = self.core.proxy.next_deadline()
            nxt = min(x for x in (d1, d2, end) if x is not None)
            if nxt > end:
                nxt = end
            self.clock.t = max(self.clock.t, nxt)
            self.core._on_timer()
            if self.clock.t >= end:
                break
