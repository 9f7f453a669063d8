"""NAT traversal helpers (Kamailio ``nathelper``): ``KSR.nathelper`` and NAT keep-alive pings.

Script functions (Kamailio's names and return codes):

- ``nat_uac_test(flags)``: 1 if any selected test finds a NAT, else -1. Bits (Kamailio's):
  1 a Contact URI host is private (RFC 1918 / RFC 6598); 2 the top Via's address differs from
  the source IP; 4 the top Via's address is private; 8 an SDP ``c=`` address is private;
  16 the source port differs from the top Via's port (5060 when absent); 32 the source IP is
  private; 64 the request came over WebSocket; 128 the Contact URI port differs from the source
  port; 256 an SDP ``c=`` address differs from the source IP; 512 requests: the R-URI and the
  destination URI ($du) name different targets (or the source is WebSocket); replies: the
  second Via's address differs from its received/rport.
- ``fix_nated_contact()``: the first Contact URI's host:port become the source address. 1 / -1.
- ``fix_nated_register()``: REGISTER: keeps ``sip:IP:PORT[;transport=T]`` of the source as the
  binding's ``received`` (the registrar's ``save`` stores it). 1 / -1.
- ``add_rcv_param(flag)``: adds ``;received="sip:IP:PORT[;transport=T]"`` to each Contact
  (flag 0) or ``;received=...`` to each Contact URI (flag 1). 1 / -1.
- ``add_contact_alias()`` / ``add_contact_alias_addr(ip, port, proto)``: adds
  ``;alias=IP~PORT~PROTO`` (PROTO numbered as Kamailio: 1 udp, 2 tcp, 3 tls, 4 sctp, 5 ws,
  6 wss) to the first Contact URI when the source differs from it: 1 added, 2 not needed, -1.
- ``set_contact_alias([trim])``: adds the alias unconditionally (Kamailio keeps this change out
  of the message buffer; here it is written into the Contact header). 1 / -1.
- ``handle_ruri_alias([mode])``: a R-URI ``;alias=`` is removed and becomes $du: 1 done,
  2 no alias, -1 error (mode 0 first alias, else the last).
- ``is_rfc1918(ip)``: 1 private, -1 not.

Keep-alive pings (``[modules.nathelper]``): every ``natping_interval`` seconds (0 = off) each
binding is pinged — only those with the ``nat_bflag`` branch flag when ``ping_nated_only`` —
with a stateless ``sipping_method`` request (OPTIONS) from ``sipping_from`` when the binding
has the ``sipping_bflag`` flag, else with a 4-byte zero UDP datagram. ``natping_disable_bflag``
exempts a binding. The destination is the binding's ``received`` address when it has one,
else its Contact's host:port. :class:`NatPinger` computes what to send (sans-IO); the runtime
calls it from a periodic task and performs the sends.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..sip.headers import Via, parse_name_addr, split_commas
from ..sip.types import Endpoint
from ..sip.uri import SipURI, parse_uri
from .modparam import at_least, load_modparams

__all__ = [
    "NatPinger",
    "NathelperParams",
    "is_private",
    "nat_uac_test",
    "nathelper_for",
]

log = logging.getLogger("siprouter.nathelper")

#: Kamailio's protocol numbers (ip_addr.h PROTO_*), used in ;alias=ip~port~proto
PROTO_IDS: dict[str, int] = {"udp": 1, "tcp": 2, "tls": 3, "sctp": 4, "ws": 5, "wss": 6}
PROTO_NAMES: dict[int, str] = {v: k for k, v in PROTO_IDS.items()}
_DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "sctp": 5060, "tls": 5061, "ws": 80, "wss": 443}

# RFC 1918, RFC 6598 (CGN) and RFC 7335 (192.0.0.0/24, Kamailio's nat_addr_mode=1 default)
_PRIVATE_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24"))


@dataclass(slots=True)
class NathelperParams:
    """``[modules.nathelper]`` (Kamailio modparam names and defaults)."""

    natping_interval: int = 0  # seconds between pings; 0 disables them
    ping_nated_only: bool = False  # ping only bindings flagged with nat_bflag
    sipping_bflag: int = -1  # branch flag: ping this binding with a SIP request
    sipping_from: str = ""  # From URI of the SIP pings (required for SIP pings)
    sipping_method: str = "OPTIONS"
    natping_disable_bflag: int = -1  # branch flag: never ping this binding
    # Kamailio's usrloc modparam of the same name: the branch flag marking a binding as NATed
    nat_bflag: int = -1
    received_avp: str = ""  # accepted for compatibility; siprouter passes received itself


_CHECKS = {
    "natping_interval": at_least(0),
    "sipping_bflag": at_least(-1),
    "natping_disable_bflag": at_least(-1),
    "nat_bflag": at_least(-1),
}


def is_private(host: str) -> bool:
    """RFC 1918 / RFC 6598 / RFC 7335 IPv4 address (Kamailio is_rfc1918)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return any(ip in n for n in _PRIVATE_V4)
    return False


def _same_ip(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return False


def _first_contact_uri(msg: Any) -> SipURI | None:
    line = msg.get("contact")
    if not line:
        return None
    try:
        parts = split_commas(line)
        if not parts or parts[0] == "*":
            return None
        return parse_uri(parse_name_addr(parts[0]).uri)
    except ValueError:
        return None


def _contact_uris(msg: Any) -> list[SipURI]:
    out = []
    for line in msg.get_all("contact"):
        try:
            for part in split_commas(line):
                if part != "*":
                    out.append(parse_uri(parse_name_addr(part).uri))
        except ValueError:
            continue
    return out


_SDP_C = re.compile(rb"^c=IN IP[46] ([^\s/]+)", re.MULTILINE)


def _sdp_addresses(msg: Any) -> list[str]:
    body = msg.body
    if not body:
        return []
    ctype = (msg.get("content-type") or "").lower()
    if "application/sdp" not in ctype and not body.startswith(b"v=0"):
        return []
    return [m.decode("latin-1") for m in _SDP_C.findall(body)]


def nat_uac_test(ctx: Any, flags: int) -> int:
    """1 if any test selected by ``flags`` detects a NAT, else -1 (see the module doc)."""
    msg = ctx.msg
    src: Endpoint | None = ctx.source
    if src is None:
        return -1
    try:
        via: Via | None = msg.via1
    except ValueError:
        via = None
    if flags & 32 and is_private(src.host):
        return 1
    if flags & 2 and via is not None and not _same_ip(via.host, src.host):
        return 1
    if flags & 16 and via is not None and (via.port or 5060) != src.port:
        return 1
    if flags & 4 and via is not None and is_private(via.host):
        return 1
    if flags & 1 and any(is_private(u.host) for u in _contact_uris(msg)):
        return 1
    if flags & 8 and any(is_private(a) for a in _sdp_addresses(msg)):
        return 1
    if flags & 64 and src.proto in ("ws", "wss"):
        return 1
    if flags & 128:
        u = _first_contact_uri(msg)
        if u is not None and (u.port or _DEFAULT_PORT.get(u.transport, 5060)) != src.port:
            return 1
    if flags & 256 and any(not _same_ip(a, src.host) for a in _sdp_addresses(msg)):
        return 1
    if flags & 512 and _targets_differ(ctx, src):
        return 1
    return -1


def _targets_differ(ctx: Any, src: Endpoint) -> bool:
    if src.proto in ("ws", "wss"):
        return True
    msg = ctx.msg
    if msg.is_request:
        du = getattr(ctx, "dst_uri", None)
        if not du:
            return False
        try:
            r, d = parse_uri(msg.ruri), parse_uri(du)
        except ValueError:
            return False
        return r.host.lower() != d.host.lower() or (r.port or 5060) != (d.port or 5060)
    try:
        vias = msg.vias
    except ValueError:
        return False
    if len(vias) < 2:
        return False
    v2 = vias[1]
    if v2.received and not _same_ip(v2.received, v2.host):
        return True
    rport = v2.rport
    return bool(rport and rport.isdigit() and int(rport) != (v2.port or 5060))


def _received_uri(src: Endpoint) -> str:
    host = f"[{src.host}]" if ":" in src.host else src.host
    t = "" if src.proto == "udp" else f";transport={src.proto}"
    return f"sip:{host}:{src.port}{t}"


def _rewrite_contacts(msg: Any, fn: Any, first_only: bool) -> bool:
    """Apply ``fn(NameAddr) -> None`` to the Contact values; rewrite the headers."""
    lines = msg.get_all("contact")
    if not lines:
        return False
    new_lines: list[str] = []
    done = False
    for line in lines:
        parts = split_commas(line)
        out = []
        for part in parts:
            if part == "*" or (first_only and done):
                out.append(part)
                continue
            na = parse_name_addr(part).copy()  # parsed values are shared: fn changes this one
            fn(na)
            out.append(na.to_string())
            done = True
        new_lines.append(", ".join(out))
    if not done:
        return False
    msg.remove("contact")
    for nl in new_lines:
        msg.add("Contact", nl)
    return True


def fix_nated_contact(ctx: Any) -> int:
    src = ctx.source
    if src is None:
        return -1

    def fix(na: Any) -> None:
        u = parse_uri(na.uri).copy()
        u.host = src.host
        u.port = src.port
        na.uri = str(u)

    try:
        return 1 if _rewrite_contacts(ctx.msg, fix, first_only=True) else -1
    except ValueError:
        return -1


def fix_nated_register(ctx: Any) -> int:
    src = ctx.source
    if src is None or not ctx.is_request or ctx.msg.method != "REGISTER":
        return -1
    ctx.vars["__received"] = _received_uri(src)
    return 1


def add_rcv_param(ctx: Any, flag: int = 0) -> int:
    src = ctx.source
    if src is None:
        return -1
    rcv = _received_uri(src)

    def add(na: Any) -> None:
        if flag:
            u = parse_uri(na.uri).copy()
            u.params["received"] = rcv.replace(";", "%3B")
            na.uri = str(u)
        else:
            na.params["received"] = f'"{rcv}"'

    try:
        return 1 if _rewrite_contacts(ctx.msg, add, first_only=False) else -1
    except ValueError:
        return -1


def _alias_value(host: str, port: int, proto: str) -> str | None:
    pid = PROTO_IDS.get(proto.lower())
    if pid is None:
        return None
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{h}~{port}~{pid}"


def _set_alias(ctx: Any, value: str, trim: bool) -> int:
    def add(na: Any) -> None:
        u = parse_uri(na.uri).copy()
        if trim:
            u.params.pop("alias", None)
        u.params["alias"] = value
        na.uri = str(u)

    try:
        return 1 if _rewrite_contacts(ctx.msg, add, first_only=True) else -1
    except ValueError:
        return -1


def add_contact_alias(ctx: Any) -> int:
    src = ctx.source
    if src is None:
        return -1
    u = _first_contact_uri(ctx.msg)
    if u is None:
        return -1
    if (_same_ip(u.host, src.host)
            and (u.port or _DEFAULT_PORT.get(src.proto, 5060)) == src.port
            and u.transport == src.proto):
        return 2
    value = _alias_value(src.host, src.port, src.proto)
    return -1 if value is None else _set_alias(ctx, value, trim=False)


def add_contact_alias_addr(ctx: Any, ip: str, port: str, proto: str) -> int:
    try:
        p = int(port)
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return -1
    if not 0 < p < 65536:
        return -1
    value = _alias_value(ip.strip("[]"), p, proto)
    return -1 if value is None else _set_alias(ctx, value, trim=False)


def set_contact_alias(ctx: Any, trim: int = 0) -> int:
    src = ctx.source
    if src is None:
        return -1
    value = _alias_value(src.host, src.port, src.proto)
    return -1 if value is None else _set_alias(ctx, value, trim=bool(trim))


def parse_alias(value: str) -> tuple[str, int, str] | None:
    """``ip~port~proto`` -> (ip, port, proto name), None when malformed."""
    parts = value.split("~")
    if len(parts) != 3:
        return None
    host, port, pid = parts
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        p, n = int(port), int(pid)
    except ValueError:
        return None
    proto = PROTO_NAMES.get(n)
    if proto is None or not 0 < p < 65536:
        return None
    return host, p, proto


_ALIAS_PARAM = re.compile(r";alias=([^;?>]*)", re.IGNORECASE)


def handle_ruri_alias(ctx: Any, mode: int = 0) -> int:
    if not ctx.is_request:
        return -1
    ruri = ctx.msg.ruri
    found = list(_ALIAS_PARAM.finditer(ruri))
    if not found:
        return 2
    m = found[0] if mode == 0 else found[-1]
    alias = parse_alias(m.group(1))
    if alias is None:
        return -1
    host, port, proto = alias
    h = f"[{host}]" if ":" in host else host
    t = "" if proto == "udp" else f";transport={proto}"
    ctx.dst_uri = f"sip:{h}:{port}{t}"
    ctx.msg.ruri = ruri[:m.start()] + ruri[m.end():]
    return 1


def is_rfc1918(ctx: Any, ip: str) -> int:
    return 1 if is_private(str(ip)) else -1


# -- keep-alive pings ---------------------------------------------------------------------------
class NatPinger:
    """Which bindings to ping and the bytes to send (sans-IO)."""

    def __init__(self, params: NathelperParams | None = None) -> None:
        self.params = params or NathelperParams()
        self._seq = itertools.count(1)
        self._next: float | None = None
        self._tag = os.urandom(4).hex()

    @property
    def enabled(self) -> bool:
        return self.params.natping_interval > 0

    def due(self, now: float) -> bool:
        """True once per ``natping_interval`` (the first call arms the interval)."""
        if not self.enabled:
            return False
        if self._next is None:
            self._next = now + self.params.natping_interval
            return False
        if now < self._next:
            return False
        self._next = now + self.params.natping_interval
        return True

    def _selected(self, b: Any) -> bool:
        p = self.params
        cflags = int(getattr(b, "cflags", 0) or 0)
        if p.natping_disable_bflag >= 0 and cflags & (1 << p.natping_disable_bflag):
            return False
        return not (p.ping_nated_only and not (p.nat_bflag >= 0 and cflags & (1 << p.nat_bflag)))

    def destination(self, b: Any) -> tuple[Endpoint, SipURI] | None:
        """Where a binding is pinged: its received address, else its Contact's host:port."""
        try:
            curi = parse_uri(b.contact if b.contact.lower().startswith(("sip:", "sips:"))
                             else parse_name_addr(b.contact).uri)
            target = parse_uri(b.received) if b.received else curi
        except ValueError:
            return None
        host = target.host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None  # names are not resolved for pings
        proto = target.transport
        port = target.port or _DEFAULT_PORT.get(proto, 5060)
        return Endpoint(proto, host, port), curi

    def pings(self, bindings: Iterable[Any], via_hostport: Any) -> list[tuple[Endpoint, bytes]]:
        """The datagrams/messages for ``bindings``; ``via_hostport(dest)`` gives our sent-by
        for a destination (None: no socket for it)."""
        p = self.params
        out: list[tuple[Endpoint, bytes]] = []
        for b in bindings:
            if not self._selected(b):
                continue
            dst = self.destination(b)
            if dst is None:
                continue
            dest, curi = dst
            cflags = int(getattr(b, "cflags", 0) or 0)
            sip = p.sipping_bflag >= 0 and cflags & (1 << p.sipping_bflag) and p.sipping_from
            if not sip:
                if dest.proto == "udp":
                    out.append((dest, b"\x00\x00\x00\x00"))
                continue
            sent_by = via_hostport(dest)
            if sent_by is None:
                continue
            out.append((dest, self.build_ping(curi, dest, sent_by)))
        return out

    def build_ping(self, curi: SipURI, dest: Endpoint, sent_by: str) -> bytes:
        p = self.params
        n = next(self._seq)
        uri = str(curi)
        method = p.sipping_method
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/{dest.proto.upper()} {sent_by};branch=z9hG4bKnp{self._tag}{n:x}\r\n"
            f"From: <{p.sipping_from}>;tag={self._tag}-{n:x}\r\n"
            f"To: <{uri}>\r\n"
            f"Call-ID: natping-{self._tag}-{n:x}@{sent_by}\r\n"
            f"CSeq: 1 {method}\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()


class Nathelper:
    """The module instance: settings and the pinger."""

    def __init__(self, params: NathelperParams | None = None) -> None:
        self.params = params or NathelperParams()
        self.pinger = NatPinger(self.params)

    @classmethod
    def from_settings(cls, table: Mapping[str, Any] | None) -> Nathelper:
        params = load_modparams(NathelperParams, "nathelper", table, _CHECKS)
        if params.natping_interval and params.sipping_bflag >= 0 and not params.sipping_from:
            log.warning("[modules.nathelper] sipping_bflag is set but sipping_from is empty: "
                        "flagged bindings get UDP pings instead of %s", params.sipping_method)
        if params.sipping_from:
            try:
                parse_uri(params.sipping_from)
            except ValueError as e:
                from .modparam import ModparamError

                raise ModparamError(f"[modules.nathelper] sipping_from: {e}") from None
        return cls(params)


def nathelper_for(core: Any) -> Nathelper:
    mods = getattr(core, "modules", None)
    if mods is None:
        return Nathelper()
    n = mods.get("nathelper")
    if n is None:
        n = mods["nathelper"] = Nathelper()
    assert isinstance(n, Nathelper)
    return n


def natping_tick(core: Any, now: float) -> int:
    """Send the pings that are due (the runtime calls this about once a second)."""
    nh = nathelper_for(core)
    pinger = nh.pinger
    if not pinger.due(now) or core.location is None:
        return 0
    wall = core.wall_clock()
    bindings = [b for aor in core.location.aors() for b in core.location.lookup(aor, wall)]

    def via_hostport(dest: Endpoint) -> str | None:
        lst = core._pick_listener(dest)
        return None if lst is None else str(lst.hostport())

    sent = 0
    for dest, data in pinger.pings(bindings, via_hostport):
        lst = core._pick_listener(dest)
        if lst is None:
            continue
        core.transport.send(dest, data, None, lst)
        sent += 1
    if sent:
        log.debug("nathelper: %d keep-alive pings sent", sent)
    return sent


def _declare() -> None:
    from .exports import INT, STR, Export, declare

    declare("nathelper", (
        Export("nat_uac_test", nat_uac_test, (INT,), INT,
               "1 if a test selected by the flags detects a NAT, else -1."),
        Export("fix_nated_contact", fix_nated_contact, (), INT,
               "Put the source address into the first Contact URI."),
        Export("fix_nated_register", fix_nated_register, (), INT,
               "REGISTER: store the source address as the binding's received URI."),
        Export("add_rcv_param", add_rcv_param, (INT,), INT,
               "Add ;received=\"source URI\" to each Contact (flag 0) or Contact URI (1)."),
        Export("add_contact_alias", add_contact_alias, (), INT,
               "Add ;alias=ip~port~proto of the source to the Contact URI: 1, 2 not needed."),
        Export("add_contact_alias_addr", add_contact_alias_addr, (STR, STR, STR), INT,
               "Add ;alias=ip~port~proto from the arguments to the Contact URI."),
        Export("set_contact_alias", lambda m: set_contact_alias(m, 0), (), INT,
               "Add ;alias of the source to the Contact URI."),
        Export("set_contact_alias_trim", lambda m: set_contact_alias(m, 1), (), INT,
               "Like set_contact_alias, replacing an existing alias."),
        Export("handle_ruri_alias", lambda m: handle_ruri_alias(m, 0), (), INT,
               "R-URI ;alias -> $du: 1 done, 2 no alias, -1 error."),
        Export("handle_ruri_alias_mode", handle_ruri_alias, (INT,), INT,
               "handle_ruri_alias(mode): 0 the first alias, else the last."),
        Export("is_rfc1918", is_rfc1918, (STR,), INT, "1 if the IP is private, else -1."),
    ), doc="NAT traversal helpers and keep-alive pings (Kamailio nathelper).")


_declare()
