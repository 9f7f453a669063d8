"""RFC 3261 §16 routing mechanics that need no state: who we are, Route processing,
Record-Route values, Via branch values, Max-Forwards and the next hop.

Rules implemented here:

- §16.4 / §16.12: a request whose Request-URI we once placed in a Record-Route (it came through a
  strict router) gets its Request-URI back from the last Route value; a top Route that is ours is
  removed (both when we record-routed twice, ``r2=on``).
- §16.6 step 4 and RFC 3261 §16.12.1.2: a Record-Route value is ``<sip:addr:port;lr>`` with
  ``transport`` when not UDP; when the request leaves on another transport than it came in on we
  insert two values (inbound side below, outbound side on top), each with ``r2=on``.
- §16.6 step 6/7: the next hop is the destination URI set by the script, else the top Route (a
  strict-router Route swaps with the Request-URI), else the Request-URI.
- §16.6 step 8 / RFC 5393 §4.2: branch values start with the magic cookie and carry a hash of the
  fields that stay the same when a request loops, so §16.3 step 4 loop detection can tell a loop
  (same hash in one of our Vias) from a spiral (the Request-URI changed).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from ..sip.headers import parse_name_addr
from ..sip.message import SipMessage
from ..sip.uri import SipURI, parse_uri
from ..sip.validate import memo_key, remember

__all__ = [
    "DEFAULT_PORTS",
    "LocalAddresses",
    "branch_hash",
    "detect_loop",
    "loose_route",
    "next_hop_uri",
    "record_route_value",
]

MAGIC_COOKIE: Final = "z9hG4bK"
DEFAULT_PORTS: Final = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443, "sctp": 5060}


_norm_cache: Final[dict[str, str]] = {}


def _norm_host(host: str) -> str:
    h = _norm_cache.get(host)
    if h is None:
        h = _norm_host_uncached(host)
        if len(_norm_cache) > 10000:
            _norm_cache.clear()
        _norm_cache[host] = h
    return h


def _norm_host_uncached(host: str) -> str:
    h = host.lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            h = str(ipaddress.IPv6Address(h))
        except ValueError:
            pass
    return h


@dataclass
class LocalAddresses:
    """The hosts and ports that are "myself" (Kamailio's ``myself``: listen addresses + aliases)."""

    hosts: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)

    def add_host(self, host: str) -> None:
        self.hosts.add(_norm_host(host))

    def add_domain(self, domain: str) -> None:
        self.domains.add(_norm_host(domain))

    def is_myself_host(self, host: str, port: int | None = None) -> bool:
        h = _norm_host(host)
        if h in self.domains:
            return True
        if h not in self.hosts:
            return False
        # Kamailio compares the port too; an absent port means the scheme default (5060).
        if port is None:
            return True
        return port in self.ports

    def is_myself(self, uri: str | SipURI) -> bool:
        """True when ``uri`` (text or parsed) names this server."""
        try:
            u = parse_uri(uri) if isinstance(uri, str) else uri
        except ValueError:
            return False
        if u.scheme == "tel":
            return False
        return self.is_myself_host(u.host, u.port)


def record_route_value(
    host: str, port: int, proto: str, *, ftag: str | None = None, r2: bool = False,
    params: str = "",
) -> str:
    """A Record-Route value for our address ``host:port`` on ``proto``."""
    hp = f"[{host}]" if ":" in host and not host.startswith("[") else host
    out = f"<sip:{hp}:{port}"
    if proto != "udp":
        out += f";transport={proto}"
    out += ";lr"
    if r2:
        out += ";r2=on"
    if ftag:
        out += f";ftag={ftag}"
    if params:
        out += params if params.startswith(";") else ";" + params
    return out + ">"


def _route_uri(value: str) -> SipURI | None:
    try:
        return parse_uri(parse_name_addr(value).uri)
    except ValueError:
        return None


# What loose_route needs of a Route value: (usable sip/sips URI, host, port, r2 with a value).
# The ftag of our own Record-Route changes with every dialog, so the facts are remembered under
# the value's memo_key, which leaves the user part and the tag/ftag value out: neither changes
# whether the value parses, its host, port or parameter names. Bounded like the other memos.
_route_memo: Final[dict[str, tuple[bool, str, int | None, bool]]] = {}


def _route_target(value: str) -> tuple[bool, str, int | None, bool]:
    key = memo_key(value)
    if key is not None:
        hit = _route_memo.get(key)
        if hit is not None:
            return hit
    u = _route_uri(value)
    if u is None or u.scheme == "tel":
        facts: tuple[bool, str, int | None, bool] = (False, "", None, False)
    else:
        facts = (True, u.host, u.port, u.params.get("r2") is not None)
    if key is not None:
        remember(_route_memo, key, facts)
    return facts


def loose_route(msg: SipMessage, me: LocalAddresses,
                consumed_out: list[str] | None = None) -> int:
    """Process Route headers of a request as §16.4 says.

    Returns Kamailio's ``loose_route`` codes: 1 when the request is routed by Route headers (a
    next hop follows from them or from a Request-URI restored from a strict router), 2 when our
    own Route values were consumed and the request goes to its Request-URI (a preloaded route to
    us), -1 when there is no Route header at all or it is unusable.

    ``consumed_out``, when given, receives the Route values removed, in their order in the
    request (the rr module reads its own parameters from the first).
    """
    routes = msg.values("route")
    restored = False
    last = ""
    # §16.4: the Request-URI is ours, i.e. a strict router put our Record-Route value there.
    if routes and me.is_myself(msg.ruri):
        try:
            ru = parse_uri(msg.ruri)
        except ValueError:
            ru = None
        if ru is not None and "lr" in ru.params:
            last = routes[-1]
            try:
                msg.ruri = parse_name_addr(last).uri
            except ValueError:
                return -1
            _remove_last_route(msg)
            routes = msg.values("route")
            restored = True
    if not routes:
        if restored and consumed_out is not None:
            consumed_out.append(last)
        return 1 if restored else -1
    consumed = 0
    while routes and consumed < 2:
        usable, host, port, r2 = _route_target(routes[0])
        if not usable or not me.is_myself_host(host, port):
            break
        msg.remove_first_value("route")
        if consumed_out is not None:
            consumed_out.append(routes[0])
        consumed += 1
        routes = routes[1:]
        if not r2:
            break
    if restored and consumed_out is not None:
        consumed_out.append(last)
    if restored:
        return 1
    if consumed and not routes:
        return 2
    return 1 if routes else -1


def _remove_last_route(msg: SipMessage) -> None:
    values = msg.values("route")
    msg.remove("route")
    for v in values[:-1]:
        msg.add("Route", v)


def next_hop_uri(msg: SipMessage, dst_uri: str | None) -> str:
    """The URI to send the request to (§16.6 steps 6-7), applying strict-router interworking."""
    if dst_uri:
        return dst_uri
    routes = msg.values("route")
    if routes:
        try:
            top = parse_name_addr(routes[0]).uri
            u = parse_uri(top)
        except ValueError:
            return msg.ruri
        if "lr" in u.params:
            return top
        # Strict router (§16.6 step 7 / §12.2.1.1): it gets the request with its own URI as the
        # Request-URI; our Request-URI goes to the end of the Route set.
        old_ruri = msg.ruri
        msg.remove_first_value("route")
        msg.add("Route", f"<{old_ruri}>")
        msg.ruri = top
        return top
    return msg.ruri


# The header lines a looping request keeps unchanged (RFC 3261 §16.6 step 8): From and To (with
# their tags), Call-ID, CSeq (number and method), Proxy-Require, Proxy-Authorization, Route
_LOOP_HEADERS: Final = frozenset((
    "from", "to", "call-id", "cseq", "proxy-require", "proxy-authorization", "route",
))


def branch_hash(msg: SipMessage, received_ruri: str) -> str:
    """Hash of the fields that a looping request keeps unchanged (RFC 3261 §16.6 step 8).

    ``received_ruri`` is the Request-URI as the request arrived, before any translation. The
    From and To lines are hashed whole: they carry the tags §16.6 names, and a proxy leaves
    them as they are (§16.6 copies them), so a loop brings them back unchanged. (Reading the values
    in one pass over the header lines costs less than parsing the tags, the CSeq number and the
    Call-ID out one by one.)
    """
    # in C when built (a word-wise multiply-shift hash of the same text); the same text always
    # takes the same path
    fast = msg.values_hash(_LOOP_HEADERS, received_ruri, msg.method)
    if fast is not None:
        return fast
    # hash() of a tuple: the seed is shared by every worker forked from one process, which is
    # all loop detection needs (a loop is seen by the node that made the Via)
    h = hash((received_ruri, msg.method, tuple(msg.wire_values_of(_LOOP_HEADERS))))
    # 60 bits in decimal: a machine-size int, and int -> str without a format call
    return str(h & 0x0FFFFFFFFFFFFFFF)


def detect_loop(msg: SipMessage, sent_by_texts: tuple[str, ...], my_hash: str) -> bool:
    """§16.3 step 4: True when one of our own Vias carries this request's branch hash."""
    raw = ",".join(msg.get_all("via"))
    if not any(s in raw for s in sent_by_texts):
        return False
    try:
        vias = msg.vias
    except ValueError:
        return False
    for v in vias:
        if v.sent_by() in sent_by_texts or v.host in sent_by_texts:
            b = v.branch or ""
            if b.startswith(MAGIC_COOKIE) and my_hash in b:
                return True
    return False
