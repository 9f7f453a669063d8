"""This host's own addresses, for listens on a wildcard address (``udp:0.0.0.0:5060``).

A socket bound to 0.0.0.0 or [::] receives on every address, but 0.0.0.0 means nothing to a
peer: written into a Via or a Record-Route it would send the peer's responses and in-dialog
requests to the peer itself. Kamailio, given no ``listen``, binds each interface address on its
own and advertises it. siprouter keeps one wildcard socket and advertises one address, the one
the kernel would send from towards the default route (:func:`route_source`; a UDP ``connect``
sends nothing), or the loopback address on a host without one. Every interface address
(:func:`interface_addresses`) counts as "myself". A host with several networks sets
``advertise`` (or one ``listen`` per address) as with Kamailio.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

__all__ = ["interface_addresses", "is_wildcard", "route_source", "wildcard_advertise"]

# documentation addresses (RFC 5737, RFC 3849): a route lookup towards them sends no packet
_PROBE = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
_LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
_SIOCGIFADDR = 0x8915


def is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def route_source(family: socket.AddressFamily) -> str | None:
    """The source address of the default route for ``family``, or None without one."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((_PROBE[family], 9))
            host = str(s.getsockname()[0])
    except (OSError, KeyError):
        return None
    return None if is_wildcard(host) else host


def wildcard_advertise(family: socket.AddressFamily) -> str:
    """What a wildcard listen of ``family`` advertises: :func:`route_source`, else loopback."""
    return route_source(family) or _LOOPBACK[family]


def interface_addresses(family: socket.AddressFamily) -> list[str]:
    """The addresses of this host's interfaces (IPv4: each interface's primary address)."""
    if family == socket.AF_INET6:
        return _ipv6_addresses()
    out: list[str] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            try:
                req = struct.pack("256s", name.encode()[:15])
                res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)
            except OSError:  # no IPv4 address on it
                continue
            out.append(socket.inet_ntoa(res[20:24]))
    return out


def _ipv6_addresses() -> list[str]:
    out: list[str] = []
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                hexaddr = line.split()[0]
                out.append(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    except (OSError, ValueError, IndexError):
        pass
    return out
