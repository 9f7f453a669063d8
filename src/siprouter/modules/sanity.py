"""Message sanity checks (Kamailio ``sanity``): ``KSR.sanity``.

``sanity_check(msg_checks, uri_checks)`` runs the checks whose bits are set, in Kamailio's
order, stops at the first failure and answers it with Kamailio's status and reason (never a
reply to a response or an ACK; some failures are dropped without a reply, as Kamailio does):

=====  ======================  =================================================================
bit    check                   failure answered with
=====  ======================  =================================================================
65536  sizes (size_checks)     400 "Message Too Large" (message, headers, body, each header,
                               method, R-URI, From/To/Contact URIs; the size_* settings)
1      R-URI SIP version       505 "Version Not Supported (R-URI)"
2      R-URI scheme            400 "Bad Request URI" / 416 "Unsupported URI Scheme in Request URI"
4      required headers        no reply (Via/From/To/Call-ID/CSeq missing or duplicated)
16384  Via1 header             no reply (no host or no branch)
32768  RFC 3261 compliance     no reply (Via1 branch without z9hG4bK, Route/Record-Route w/o lr)
8      Via SIP version         505 "Version Not Supported (Via)"
16     Via protocol            400 "Unsupported Transport in Topmost Via" /
                               400 "Transport Missmatch in Topmost Via" (Kamailio's spelling)
32     CSeq method             400 "Missing method in CSeq header" /
                               400 "CSeq method does not match request method"
64     CSeq value              400 "Missing number in CSeq header" / 400 "CSeq number is illegal"
128    Content-Length          400 "Content-Length Failure" / "Content-Length mis-match"
256    Expires value           400 "Bad Expires Header" / "Missing number in Expires header" /
                               "Expires value is illegal"
512    Proxy-Require           420 "Bad Proxy Require Extension" (Unsupported: lists them)
1024   parse URIs (uri_checks) 400 "Bad Request URI" / "Invalid From Header" /
                               "Invalid To Header" / "Bad Contact Header" / "Bad Contact URI"
2048   digest credentials      400 "Bad Auth Header" / "Bad Auth Credentials" / "Auth Empty User"
8192   authorization           no reply (credentials that do not parse)
4096   duplicated tags         400 "Many From Tag Params" / "Many To Tag Params"
=====  ======================  =================================================================

``uri_checks`` bits: 1 R-URI, 2 From, 4 To, 8 Contact. Defaults (Kamailio's):
``default_checks = 3047`` and ``uri_checks = 7``; the KSR function takes both explicitly.

Return values (Kamailio's KEMI ``sanity_check``): 1 passed, -1 failed. ``autodrop`` (default
1): in Kamailio it makes the *native* cfg function end the script; KEMI scripts always get -1
and exit themselves. Here the KSR function does the same, and :func:`check` (the Pythonic API)
raises :class:`~siprouter.scripting.api.StopRoute` on failure when ``autodrop`` is on.
``noreply = 1`` suppresses the reply and keeps it for ``sanity_reply()``.

Parsing reuses :mod:`siprouter.sip.headers` and :mod:`siprouter.sip.uri`; nothing is parsed
twice that the message caches already.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..sip.digest import parse_auth_header
from ..sip.headers import parse_contacts, parse_cseq, parse_name_addr, parse_name_addr_list
from ..sip.uri import UnsupportedURIScheme, parse_uri
from .modparam import at_least, between, load_modparams

__all__ = ["Sanity", "SanityParams", "SanityResult", "check", "sanity_for"]

log = logging.getLogger("siprouter.sanity")

RURI_SIP_VERSION = 1
RURI_SCHEME = 2
REQUIRED_HEADERS = 4
VIA_SIP_VERSION = 8
VIA_PROTOCOL = 16
CSEQ_METHOD = 32
CSEQ_VALUE = 64
CL = 128
EXPIRES_VALUE = 256
PROXY_REQUIRE = 512
PARSE_URIS = 1024
CHECK_DIGEST = 2048
CHECK_DUPTAGS = 4096
CHECK_AUTHORIZATION = 8192
VIA1_HEADER = 16384
RFC3261_COMPLIANCE = 32768
CHECK_SIZES = 65536
MAX_CHECKS = 1 << 17

URI_RURI = 1
URI_FROM = 2
URI_TO = 4
URI_CONTACT = 8
URI_MAX_CHECKS = 1 << 4


@dataclass(slots=True)
class SanityParams:
    """``[modules.sanity]`` (Kamailio modparam names and defaults)."""

    default_checks: int = 3047
    uri_checks: int = 7
    proxy_require: str = ""  # comma-separated extensions this proxy supports
    autodrop: bool = True
    noreply: bool = False
    size_checks: bool = False
    size_message: int = 16384
    size_headers: int = 8192
    size_body: int = 8192
    size_header: int = 2048
    size_method: int = 32
    size_ruri: int = 256
    size_from_uri: int = 256
    size_to_uri: int = 256
    size_contact_uri: int = 256


_CHECKS = {
    "default_checks": between(1, MAX_CHECKS - 1),
    "uri_checks": between(1, URI_MAX_CHECKS - 1),
    **{k: at_least(0) for k in (
        "size_message", "size_headers", "size_body", "size_header", "size_method",
        "size_ruri", "size_from_uri", "size_to_uri", "size_contact_uri")},
}

#: (status, reason) of a failure; status 0 = fail without a reply
SanityResult = tuple[int, str] | None
_NOREPLY: tuple[int, str] = (0, "")

_TRANSPORTS = frozenset({"UDP", "TCP", "TLS", "SCTP", "WS", "WSS"})
_TAG_RE = re.compile(r";\s*tag\s*=", re.IGNORECASE)


def _uint(text: str) -> bool:
    """Kamailio str2valid_uint: decimal digits that fit 32 bits."""
    return text.isdigit() and text.isascii() and len(text) <= 10 and int(text) <= 0xFFFFFFFF


class Sanity:
    """The checks with their settings; :meth:`run` is sans-IO (message in, verdict out)."""

    def __init__(self, params: SanityParams | None = None) -> None:
        self.params = p = params or SanityParams()
        self.supported = frozenset(
            t.strip() for t in p.proxy_require.split(",") if t.strip())

    @classmethod
    def from_settings(cls, table: Mapping[str, Any] | None) -> Sanity:
        return cls(load_modparams(SanityParams, "sanity", table, _CHECKS))

    # each check returns None (passed) or (status, reason); status 0: no reply
    def run(self, msg: Any, proto: str, msg_checks: int, uri_checks: int) -> SanityResult:
        """The first failed check of ``msg`` (a SipMessage received over ``proto``)."""
        try:
            return self._run(msg, proto, msg_checks, uri_checks)
        except ValueError:  # an accessor refusing a value no check foresaw
            return 400, "Bad Request"

    def _run(self, msg: Any, proto: str, checks: int, uri_checks: int) -> SanityResult:
        req = msg.is_request
        if checks & CHECK_SIZES or self.params.size_checks:
            r = self._sizes(msg)
            if r:
                return r
        if req and checks & RURI_SIP_VERSION and msg.version != "SIP/2.0":
            return 505, "Version Not Supported (R-URI)"
        if req and checks & RURI_SCHEME:
            try:
                parse_uri(msg.ruri)
            except UnsupportedURIScheme:
                return 416, "Unsupported URI Scheme in Request URI"
            except ValueError:
                return 400, "Bad Request URI"
        if checks & REQUIRED_HEADERS:
            for h in ("to", "from", "cseq", "call-id", "via"):
                if not msg.has(h):
                    return _NOREPLY
            for h in ("from", "to", "call-id", "cseq"):
                if msg.count(h) > 1:
                    return _NOREPLY
        if checks & (VIA1_HEADER | RFC3261_COMPLIANCE | VIA_SIP_VERSION | VIA_PROTOCOL):
            try:
                via = msg.via1
            except ValueError:
                return _NOREPLY
            if checks & VIA1_HEADER and (not via.host or not via.branch):
                return _NOREPLY
            if checks & RFC3261_COMPLIANCE:
                r = self._rfc3261(msg, via)
                if r:
                    return r
            if checks & VIA_SIP_VERSION and via.protocol.upper() != "SIP/2.0":
                return 505, "Version Not Supported (Via)"
            if req and checks & VIA_PROTOCOL:
                t = via.transport.upper()
                if t not in _TRANSPORTS:
                    return 400, "Unsupported Transport in Topmost Via"
                if t != proto.upper() and not (t in ("WS", "WSS") and proto in ("ws", "wss")):
                    return 400, "Transport Missmatch in Topmost Via"
        if checks & (CSEQ_METHOD | CSEQ_VALUE):
            r = self._cseq(msg, checks)
            if r:
                return r
        if checks & CL:
            cl = msg.get("content-length")
            if cl is not None:
                if not cl.isdigit():
                    return 400, "Content-Length Failure"
                if int(cl) != len(msg.body):
                    return 400, "Content-Length mis-match"
        if checks & EXPIRES_VALUE:
            r = self._expires(msg)
            if r:
                return r
        if req and checks & PROXY_REQUIRE and msg.has("proxy-require"):
            unknown = [t for t in msg.values("proxy-require") if t not in self.supported]
            if unknown:
                return 420, "Bad Proxy Require Extension"
        if checks & PARSE_URIS:
            r = self._uris(msg, uri_checks)
            if r:
                return r
        if req and checks & CHECK_DIGEST:
            r = self._digest(msg, reply=True)
            if r:
                return r
        if req and checks & CHECK_AUTHORIZATION:
            r = self._digest(msg, reply=False)
            if r:
                return r
        if checks & CHECK_DUPTAGS:
            for h, reason in (("from", "Many From Tag Params"), ("to", "Many To Tag Params")):
                v = msg.get(h)
                if v is not None:
                    tail = v[v.rfind(">") + 1:] if ">" in v else v
                    if len(_TAG_RE.findall(tail)) > 1:
                        return 400, reason
        return None

    def _sizes(self, msg: Any) -> SanityResult:
        p = self.params
        raw = msg.to_bytes()
        body = msg.body
        hdr_len = len(raw) - len(body)
        bad = (
            (p.size_message and len(raw) > p.size_message)
            or (p.size_headers and hdr_len > p.size_headers)
            or (p.size_body and len(body) > p.size_body)
            or (p.size_method and len(msg.method or msg.cseq_method) > p.size_method)
            or (p.size_ruri and msg.is_request and len(msg.ruri) > p.size_ruri)
        )
        if not bad and p.size_header:
            bad = any(len(n) + len(v) + 2 > p.size_header for n, v in msg.header_items())
        if not bad:
            for h, limit in (("from", p.size_from_uri), ("to", p.size_to_uri),
                             ("contact", p.size_contact_uri)):
                v = msg.get(h)
                if limit and v is not None:
                    try:
                        if len(parse_name_addr(v).uri) > limit:
                            bad = True
                            break
                    except ValueError:
                        pass  # the URI checks answer that
        return (400, "Message Too Large") if bad else None

    @staticmethod
    def _rfc3261(msg: Any, via: Any) -> SanityResult:
        if not (via.branch or "").startswith("z9hG4bK"):
            return _NOREPLY
        for h in ("record-route", "route"):
            for line in msg.get_all(h):
                try:
                    for na in parse_name_addr_list(line):
                        if not parse_uri(na.uri).lr:
                            return _NOREPLY
                except ValueError:
                    return _NOREPLY
        return None

    @staticmethod
    def _cseq(msg: Any, checks: int) -> SanityResult:
        v = (msg.get("cseq") or "").strip()
        num, _, method = v.partition(" ")
        method = method.strip()
        if msg.is_request and checks & CSEQ_METHOD:
            if not method:
                return 400, "Missing method in CSeq header"
            if method != msg.method:
                return 400, "CSeq method does not match request method"
        if checks & CSEQ_VALUE:
            if not num:
                return 400, "Missing number in CSeq header"
            try:
                parse_cseq(v)
            except ValueError:
                return 400, "CSeq number is illegal"
            if not _uint(num):
                return 400, "CSeq number is illegal"
        return None

    @staticmethod
    def _expires(msg: Any) -> SanityResult:
        if not msg.has("expires"):
            return None
        if msg.count("expires") > 1:
            return 400, "Bad Expires Header"
        v = (msg.get("expires") or "").strip()
        if not v:
            return 400, "Missing number in Expires header"
        if not v.isdigit():
            if any(c.isspace() or c in ",;" for c in v):
                return 400, "Bad Expires Header"
            return 400, "Expires value is illegal"
        if not _uint(v):
            return 400, "Expires value is illegal"
        return None

    @staticmethod
    def _uris(msg: Any, uri_checks: int) -> SanityResult:
        if msg.is_request and uri_checks & URI_RURI:
            try:
                parse_uri(msg.ruri)
            except ValueError:
                return 400, "Bad Request URI"
        for bit, h, reason in ((URI_FROM, "from", "Invalid From Header"),
                               (URI_TO, "to", "Invalid To Header")):
            if uri_checks & bit:
                v = msg.get(h)
                if not v:
                    return _NOREPLY
                try:
                    parse_uri(parse_name_addr(v).uri)
                except ValueError:
                    return 400, reason
        if uri_checks & URI_CONTACT:
            lines = msg.get_all("contact")
            if lines:
                try:
                    contacts = parse_contacts(lines)
                except ValueError:
                    return 400, "Bad Contact Header"
                if contacts != "*" and contacts:
                    try:
                        parse_uri(contacts[0].uri)
                    except ValueError:
                        return 400, "Bad Contact URI"
        return None

    @staticmethod
    def _digest(msg: Any, reply: bool) -> SanityResult:
        for h in ("authorization", "proxy-authorization"):
            for v in msg.get_all(h):
                try:
                    scheme, params = parse_auth_header(v)
                except ValueError:
                    return (400, "Bad Auth Header") if reply else _NOREPLY
                if scheme.lower() != "digest":
                    continue
                if not all(k in params for k in ("username", "realm", "nonce", "uri",
                                                 "response")):
                    return (400, "Bad Auth Credentials") if reply else _NOREPLY
                if not params["username"]:
                    return (400, "Auth Empty User") if reply else _NOREPLY
        return None


# -- the module instance of a runtime ----------------------------------------------------------
def sanity_for(core: Any) -> Sanity:
    """``core.modules["sanity"]``, created with the default settings when not configured."""
    mods = getattr(core, "modules", None)
    if mods is None:
        return _DEFAULT
    s = mods.get("sanity")
    if s is None:
        s = mods["sanity"] = Sanity()
    assert isinstance(s, Sanity)
    return s


_DEFAULT = Sanity()


def _apply(req: Any, msg_checks: int, uri_checks: int) -> int:
    """Run the checks on a script context; reply as Kamailio does; 1 passed, -1 failed."""
    san = sanity_for(req.core)
    src = req.source
    result = san.run(req.msg, src.proto if src is not None else "udp", msg_checks, uri_checks)
    req.vars.pop("__sanity_reply", None)
    if result is None:
        return 1
    status, reason = result
    log.info("sanity check failed (%s), call-id=%s", reason or "dropped", _call_id(req.msg))
    if status and req.is_request and req.msg.method != "ACK":
        if san.params.noreply:
            req.vars["__sanity_reply"] = (status, reason)
        else:
            headers: list[tuple[str, str]] = []
            if status == 420:
                unknown = [t for t in req.msg.values("proxy-require")
                           if t not in san.supported]
                headers.append(("Unsupported", ", ".join(unknown)))
            req.reply(status, reason, headers=headers)
    return -1


def _call_id(msg: Any) -> str:
    try:
        return str(msg.call_id)
    except ValueError:
        return "?"


def check(req: Any, msg_checks: int | None = None, uri_checks: int | None = None) -> bool:
    """Pythonic API: True when the message passed; on failure the reply is sent and, with
    ``autodrop``, the route stops (StopRoute)."""
    san = sanity_for(req.core)
    mc = san.params.default_checks if msg_checks is None else msg_checks
    uc = san.params.uri_checks if uri_checks is None else uri_checks
    if _apply(req, mc, uc) > 0:
        return True
    if san.params.autodrop:
        from ..scripting.api import StopRoute

        raise StopRoute()
    return False


# -- KSR.sanity --------------------------------------------------------------------------------
def sanity_check(msg: Any, msg_checks: int, uri_checks: int) -> int:
    if not 1 <= msg_checks < MAX_CHECKS:
        log.error("sanity_check: msg_checks %d outside 1..%d", msg_checks, MAX_CHECKS - 1)
        return -1
    if not 1 <= uri_checks < URI_MAX_CHECKS:
        log.error("sanity_check: uri_checks %d outside 1..%d", uri_checks, URI_MAX_CHECKS - 1)
        return -1
    return _apply(msg, msg_checks, uri_checks)


def sanity_check_defaults(msg: Any) -> int:
    p = sanity_for(msg.core).params
    return _apply(msg, p.default_checks, p.uri_checks)


def sanity_reply(msg: Any) -> int:
    """Send the reply kept by a failed check when ``noreply`` is set: 1 sent, -1 nothing."""
    kept = msg.vars.pop("__sanity_reply", None)
    if kept is None or not msg.is_request:
        return -1
    msg.reply(kept[0], kept[1])
    return 1


def _declare() -> None:
    from .exports import INT, Export, declare

    declare("sanity", (
        Export("sanity_check", sanity_check, (INT, INT), INT,
               "Run the checks whose bits are set (msg_checks, uri_checks); a failure is "
               "answered as Kamailio does. 1 passed, -1 failed."),
        Export("sanity_check_defaults", sanity_check_defaults, (), INT,
               "sanity_check with default_checks and uri_checks."),
        Export("sanity_reply", sanity_reply, (), INT,
               "With noreply=1: send the reply of the failed check."),
    ), doc="Message sanity checks (Kamailio sanity).")


_declare()
