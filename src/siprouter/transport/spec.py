"""Plain transport value types: listen specifications, listeners, transport settings.

No I/O here, so the configuration layer can validate ``listen`` values with the same parser
the transport uses.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

__all__ = [
    "SUPPORTED_PROTOS",
    "ListenSpec",
    "Listener",
    "TransportSettings",
    "parse_hostport",
]

#: protocols a listener can be opened for today
SUPPORTED_PROTOS = ("udp", "tcp")

# RFC 3261 §19.1.2: default port of sip: URIs over UDP/TCP
_DEFAULT_PORT = 5060


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """What the transport layer needs from the configuration."""

    # Kamailio BUF_SIZE (65535): larger datagrams are dropped, larger stream messages close
    # the connection.
    max_message_size: int = 65535
    # seconds a TCP connection may stay without traffic before it is closed
    # (siprouter default; Kamailio's tcp_connection_lifetime is 120 s)
    tcp_idle_timeout: float = 600.0
    # Kamailio tcp_max_connections default: inbound connections beyond it are closed at accept,
    # outbound ones are refused
    tcp_max_connections: int = 2048
    # Kamailio tcp_connect_timeout default (10 s)
    tcp_connect_timeout: float = 10.0
    # SO_REUSEPORT on every listening socket, so that several worker processes bind the same
    # port; the kernel spreads datagrams and connections over them by source address
    reuse_port: bool = False


def _parse_port(text: str, what: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"{what}: port {text!r} is not a number")
    port = int(text)
    if port > 65535:
        raise ValueError(f"{what}: port {port} out of range 0..65535")
    return port


def parse_hostport(text: str, what: str = "address") -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 in brackets); returns host without brackets and port or None."""
    if not text:
        raise ValueError(f"{what}: empty host")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{what}: missing ']' after IPv6 address in {text!r}")
        host = text[1:close]
        rest = text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{what}: unexpected {rest!r} after ']' in {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{what}: host {host!r} is not an IPv6 address") from None
        return host, (_parse_port(rest[1:], what) if rest else None)
    if text.count(":") > 1:
        raise ValueError(f"{what}: IPv6 address must be in brackets: {text!r}")
    host, sep, port = text.partition(":")
    if not host:
        raise ValueError(f"{what}: empty host in {text!r}")
    return host, (_parse_port(port, what) if sep else None)


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """What to listen on: ``PROTO:HOST:PORT`` (``udp:0.0.0.0:5060``, ``tcp:[::1]:5060``).

    ``HOST`` is an IP literal (IPv6 in brackets) or ``*`` for every IPv4 address (write ``[::]``
    for every IPv6 address). ``PORT`` may be omitted (5060) and may be 0 (any free port).
    An optional `` advertise HOST[:PORT]`` suffix (Kamailio's syntax) sets the address written
    into Via / Record-Route instead of the bound one, e.g. behind NAT.
    """

    proto: str
    host: str  # IP literal, IPv6 without brackets
    port: int
    advertise_host: str | None = None
    advertise_port: int | None = None

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @classmethod
    def parse(cls, text: str) -> ListenSpec:
        """Parse a listen string; raises ValueError naming the bad part."""
        what = f"listen {text!r}"
        words = text.split()
        if not words:
            raise ValueError(f"{what}: expected PROTO:HOST:PORT, e.g. udp:0.0.0.0:5060")
        main = words[0]
        advertise_host: str | None = None
        advertise_port: int | None = None
        if len(words) > 1:
            if words[1].lower() != "advertise":
                raise ValueError(f"{what}: unexpected {words[1]!r} (only 'advertise HOST[:PORT]')")
            if len(words) != 3:
                raise ValueError(f"{what}: advertise: expected one HOST[:PORT]")
            advertise_host, advertise_port = parse_hostport(words[2], f"{what}: advertise")
        proto, sep, hostport = main.partition(":")
        if not sep:
            raise ValueError(f"{what}: expected PROTO:HOST:PORT, e.g. udp:0.0.0.0:5060")
        proto = proto.lower()
        if proto not in SUPPORTED_PROTOS:
            raise ValueError(
                f"{what}: protocol {proto!r} not supported (use {', '.join(SUPPORTED_PROTOS)})"
            )
        host, port = parse_hostport(hostport, what)
        if host == "*":
            host = "0.0.0.0"
        else:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"{what}: host {host!r} is not an IP address (or '*')") from None
        return cls(
            proto,
            host,
            _DEFAULT_PORT if port is None else port,
            advertise_host,
            advertise_port,
        )

    def with_advertise(self, host: str | None, port: int | None) -> ListenSpec:
        """A copy advertising ``host[:port]``, unless this spec has its own ``advertise``."""
        if self.advertise_host is not None or host is None:
            return self
        return ListenSpec(self.proto, self.host, self.port, host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.proto}:{host}:{self.port}"
        if self.advertise_host is not None:
            ahost = (
                f"[{self.advertise_host}]" if ":" in self.advertise_host else self.advertise_host
            )
            text += f" advertise {ahost}"
            if self.advertise_port is not None:
                text += f":{self.advertise_port}"
        return text


@dataclass(eq=False, slots=True)
class Listener:
    """An open listening socket. ``port`` is the bound port (known after binding port 0).

    ``advertise_host`` / ``advertise_port`` are what to write into Via, Record-Route and Contact:
    the configured advertised address, else the bound one.
    """

    proto: str
    host: str
    port: int
    advertise_host: str
    advertise_port: int
    sock_family: socket.AddressFamily = field(default=socket.AF_INET)

    @classmethod
    def bound(cls, spec: ListenSpec, port: int) -> Listener:
        """The listener of ``spec`` once bound to ``port`` (its ``advertise``, else itself)."""
        return cls(
            spec.proto,
            spec.host,
            port,
            spec.advertise_host if spec.advertise_host is not None else spec.host,
            spec.advertise_port if spec.advertise_port is not None else port,
            spec.family,
        )

    def hostport(self) -> str:
        """The advertised ``host:port`` as SIP writes it (IPv6 bracketed)."""
        if ":" in self.advertise_host:
            return f"[{self.advertise_host}]:{self.advertise_port}"
        return f"{self.advertise_host}:{self.advertise_port}"

    def __repr__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"<Listener {self.proto}:{host}:{self.port} advertise {self.hostport()}>"
