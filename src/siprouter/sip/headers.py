"""Header values of SIP messages (RFC 3261 §20, §25.1 grammar), sans-IO.

The message layer hands over header values as text (already unfolded); this module turns the
values the core needs into small objects and back into text:

- ``split_commas`` — split a header value into its comma-separated items, respecting quoted
  strings (with backslash escapes) and ``<...>`` URIs.
- ``Via`` / ``parse_via`` — sent-protocol, sent-by and via-params (§20.42, RFC 3581 ``rport``,
  RFC 5118 IPv6 references).
- ``NameAddr`` / ``parse_name_addr`` / ``parse_name_addr_list`` / ``parse_contacts`` — From, To,
  Contact, Route, Record-Route values (§20.10: parameters after a bare addr-spec belong to the
  header, not to the URI).
- ``parse_cseq`` — CSeq (§20.16).

Parameter values are kept *as written* (a quoted-string value keeps its quotes) so a value read
and written back is unchanged; keys are lower case. A key present without a value maps to None.

Every parser raises ``ValueError`` (with a message naming the problem) on bad syntax, nothing else.
Regular expressions are compiled once at import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Literal

from ..native import native
from .charset import ALNUM, any_char_in, char_table, chars_in
from .uri import normalize_ipv6

# The common Via form read in C (siprouter/sip/_scan.c), built with the compiled hot path.
_ViaParm = Callable[[str], tuple[str, str, int | None, dict[str, str | None]] | None]


_c_via_parm: Final[_ViaParm | None] = native("siprouter.sip._scan", "via_parm")
# the common name-addr form, "<uri>;k=v...", read in C: (uri, params) or None
_NameAddrParts = Callable[[str], tuple[str, dict[str, str | None]] | None]
_c_name_addr_parts: Final[_NameAddrParts | None] = native("siprouter.sip._scan",
                                                          "name_addr_parts")

__all__ = [
    "NameAddr",
    "Via",
    "format_params",
    "format_via",
    "parse_contacts",
    "parse_cseq",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_via",
    "quote_string",
    "split_commas",
    "unquote_string",
]

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_SWS = r"[ \t\r\n]*"
_LWS = r"[ \t\r\n]+"
# host = hostname / IPv4address / IPv6reference; the IPv6 literal is checked separately.
_HOST = r"\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9\-._]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'

_TOKEN_RE = re.compile(_TOKEN)
_VIA_HEAD_RE = re.compile(
    rf"{_SWS}({_TOKEN}){_SWS}/{_SWS}({_TOKEN}){_SWS}/{_SWS}({_TOKEN}){_LWS}({_HOST})"
    rf"(?:{_SWS}:{_SWS}([0-9]+))?",
    re.DOTALL,
)
# generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string.
# The unquoted value is taken leniently (anything but separators) and kept as written.
_PARAM_RE = re.compile(
    rf"{_SWS};{_SWS}({_TOKEN})(?:{_SWS}={_SWS}({_QUOTED}|[^ \t\r\n;,\"<>]+))?",
    re.DOTALL,
)
_CSEQ_RE = re.compile(rf"{_SWS}([0-9]+){_LWS}({_TOKEN}){_SWS}")
_QUOTED_AT_RE = re.compile(_QUOTED, re.DOTALL)
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_DISPLAY_TOKENS_RE = re.compile(rf"{_TOKEN}(?:{_LWS}{_TOKEN})*")
_BAD_URI_CHARS: Final = char_table(" \t\r\n<>\"")
_NEEDS_QUOTES_RE = re.compile(r"[^A-Za-z0-9\-.!%*_+`'~ ]")

_MAX_CSEQ = 2**31 - 1


# --------------------------------------------------------------------------------------------
# generic helpers


def cut_first_item(value: str) -> tuple[str, str] | None:
    """``(first item, rest)`` of a comma-separated value without reading the rest: the common
    case of :func:`split_commas`, for callers that want only the first item. ``rest`` is the
    text after the first comma, stripped ("" when there is none). None when ``split_commas``
    must decide: a quote or ``<`` (a comma inside them does not separate), or an empty first
    item."""
    if '"' in value or "<" in value:
        return None
    comma = value.find(",")
    if comma < 0:
        first = value.strip()
        rest = ""
    else:
        first = value[:comma].strip()
        rest = value[comma + 1 :].strip()
    return (first, rest) if first else None


_c_rport_fill: Final[Callable[[str, str, str], str | None] | None] = native(
    "siprouter.sip._scan", "rport_fill"
)


def fill_rport(value: str, port: str, host: str) -> str | None:
    """The top Via line ``value`` (wire form) with ``=port;received=host`` written after the
    ``;rport`` that ends its first via-parm, where that is its first ``;rport`` (RFC 3581, as
    nearly every UA asks for it); None for any other value (the caller writes the Via again).
    In C when built (``siprouter.sip._scan.rport_fill``)."""
    if _c_rport_fill is not None:
        return _c_rport_fill(value, port, host)
    return _fill_rport_py(value, port, host)


def _fill_rport_py(value: str, port: str, host: str) -> str | None:
    cut = cut_first_item(value)
    if cut is None:
        return None
    first, rest = cut
    if len(first) < 6 or first.find(";rport") != len(first) - 6:
        return None
    top = f"{first}={port};received={host}"
    return f"{top}, {rest}" if rest else top


def split_commas(value: str) -> list[str]:
    """Split ``value`` on commas outside double quotes and outside ``<...>``.

    Items are stripped of surrounding whitespace; empty items are dropped. An unterminated
    quote or bracket swallows the rest of the value into the last item (its parser then
    reports the syntax error).
    """
    if '"' not in value and "<" not in value:
        if "," not in value:
            item = value.strip()
            return [item] if item else []
        return [s for s in (p.strip() for p in value.split(",")) if s]
    items: list[str] = []
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == '"':
            i += 1
            while i < n:
                c = value[i]
                if c == "\\":
                    i += 2
                    continue
                if c == '"':
                    break
                i += 1
        elif c == "<":
            end = value.find(">", i + 1)
            i = n if end < 0 else end
        elif c == ",":
            item = value[start:i].strip()
            if item:
                items.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip()
    if item:
        items.append(item)
    return items


def unquote_string(text: str) -> str:
    """Return the content of a quoted-string (``"a\\"b"`` -> ``a"b``); other text unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return _UNESCAPE_RE.sub(r"\1", inner) if "\\" in inner else inner
    return text


def quote_string(text: str) -> str:
    """Return ``text`` as a quoted-string, escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str, pos: int = 0) -> tuple[dict[str, str | None], int]:
    """Parse ``*( SEMI generic-param )`` from ``text[pos:]``.

    Returns the parameters (lower-case keys, values as written) and the position after the
    last parameter. Stops at the first character that does not start a parameter.
    """
    params: dict[str, str | None] = {}
    # no ";" after the optional whitespace: no parameter (what the regex would find, without
    # calling it; most name-addrs and URIs end here)
    i, n = pos, len(text)
    while i < n and text[i] in " \t\r\n":
        i += 1
    if i >= n or text[i] != ";":
        return params, pos
    match = _PARAM_RE.match
    while True:
        m = match(text, pos)
        if m is None:
            return params, pos
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()


def _params_to_end(text: str, pos: int, what: str) -> dict[str, str | None]:
    params, pos = parse_params(text, pos)
    if pos != len(text) and not text[pos:].isspace():
        raise ValueError(f"bad {what}: unexpected {text[pos : pos + 20]!r}")
    return params


def format_params(params: dict[str, str | None]) -> str:
    """``{'a': '1', 'lr': None}`` -> ``';a=1;lr'``."""
    parts: list[str] = []
    for k, v in params.items():
        parts.append(";" + k if v is None else f";{k}={v}")
    return "".join(parts)


def _flag(params: dict[str, str | None], key: str) -> str | None:
    """None = absent, '' = present without value, else the value as written."""
    if key not in params:
        return None
    v = params[key]
    return "" if v is None else v


def _check_host(host: str, what: str) -> str:
    """Return the host as used in objects (IPv6 unbracketed) or raise ValueError."""
    if host[0] == "[":
        inner = host[1:-1]
        try:
            normalize_ipv6(inner)
        except ValueError:
            raise ValueError(f"bad {what}: invalid IPv6 reference {host!r}") from None
        return inner
    return host


def _check_port(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    if len(text) > 5 or int(text) > 65535:
        raise ValueError(f"bad {what}: port {text!r} out of range")
    return int(text)


# --------------------------------------------------------------------------------------------
# Via


class Via:
    """One via-parm. ``params`` keys are lower case, values as written (None = no value).

    A plain class rather than a dataclass: the compiled build compiles an explicit
    ``__init__``, where a dataclass's generated one stays interpreted (about 2,000
    instructions per object on the hot path)."""

    __slots__ = ("host", "params", "port", "protocol", "transport")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params
        self.protocol = protocol

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (self.transport == other.transport and self.host == other.host
                and self.port == other.port and self.params == other.params
                and self.protocol == other.protocol)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return (f"Via(transport={self.transport!r}, host={self.host!r}, port={self.port!r}, "
                f"params={self.params!r}, protocol={self.protocol!r})")

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return _flag(self.params, "received")

    @property
    def rport(self) -> str | None:
        """None = absent, '' = present without value (RFC 3581 request), else the port."""
        return _flag(self.params, "rport")

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        v = self.params.get("ttl")
        return None if v is None else int(v)

    def sent_by(self) -> str:
        """``host[:port]``, IPv6 hosts bracketed."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def to_string(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by()}{format_params(self.params)}"

    def __str__(self) -> str:
        return self.to_string()


def format_via(transport: str, host: str, port: int | None, params: dict[str, str | None]) -> str:
    """Build a Via value: ``SIP/2.0/UDP host:port;params`` (IPv6 hosts bracketed)."""
    return Via(transport.upper(), host, port, params).to_string()


# The form nearly every element writes: ``SIP/2.0/UDP host[:port];k[=v]...`` with no LWS and
# no quoted values. It is read with plain string methods and byte-table checks (no regex: the
# regex engine costs tens of instructions a character); anything else takes the full parser.
_FAST_HOST: Final = char_table(ALNUM + ".-")
_FAST_PORT: Final = char_table("0123456789")
_FAST_PKEY: Final = char_table(ALNUM + "-.!%*_+`'~")
_FAST_PVAL: Final = char_table(ALNUM + "-.!%*_+`'~:[]")
_FAST_TRANSPORTS: Final = frozenset(("UDP", "TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"))


def _fast_via(text: str) -> Via | None:
    if _c_via_parm is not None:
        got = _c_via_parm(text)
        return None if got is None else Via(got[0], got[1], got[2], got[3])
    return _fast_via_py(text)


def _fast_via_py(text: str) -> Via | None:
    """What ``siprouter.sip._scan.via_parm`` does in C, when it is built."""
    if not text.startswith("SIP/2.0/"):
        return None
    sp = text.find(" ", 8)
    if sp < 0:
        return None
    transport = text[8:sp].upper()
    if transport not in _FAST_TRANSPORTS:
        return None
    parts = text[sp + 1 :].split(";")
    host, colon, port_text = parts[0].partition(":")
    if not chars_in(host, _FAST_HOST):
        return None
    port: int | None = None
    if colon:
        if len(port_text) > 5 or not chars_in(port_text, _FAST_PORT):
            return None
        port = _check_port(port_text, "Via")
    params: dict[str, str | None] = {}
    for j in range(1, len(parts)):
        k, eq, v = parts[j].partition("=")
        if not chars_in(k, _FAST_PKEY):
            return None
        if eq:
            if not chars_in(v, _FAST_PVAL):
                return None
            params[k.lower()] = v
        else:
            params[k.lower()] = None
    ttl = params.get("ttl", "0")
    if ttl is None or not ttl.isdigit() or int(ttl) > 255:
        return None
    if "branch" in params and params["branch"] is None:
        return None
    return Via(transport, host, port, params)


def _parse_one_via(text: str) -> Via:
    v = _fast_via(text)
    return v if v is not None else _parse_one_via_full(text)


def _parse_one_via_full(text: str) -> Via:
    m = _VIA_HEAD_RE.match(text)
    if m is None:
        raise ValueError(f"bad Via: {text[:40]!r}")
    name, version, transport, host, port = m.groups()
    params = _params_to_end(text, m.end(), "Via")
    ttl = params.get("ttl", "0")
    if ttl is None or not ttl.isdigit() or int(ttl) > 255:
        raise ValueError(f"bad Via: ttl {ttl!r}")
    if "branch" in params and params["branch"] is None:
        raise ValueError("bad Via: branch without value")
    protocol = f"{name.upper()}/{version}" if version != "2.0" or name != "SIP" else "SIP/2.0"
    return Via(
        transport.upper(), _check_host(host, "Via"), _check_port(port, "Via"), params, protocol
    )


def parse_via(value: str) -> list[Via]:
    """Parse a Via header value (one or more comma-separated via-parms)."""
    items = split_commas(value)
    if not items:
        raise ValueError("bad Via: empty")
    return parse_via_items(items)


def parse_via_items(items: list[str]) -> list[Via]:
    return [_parse_one_via(item) for item in items]


def parse_first_via(value: str) -> Via:
    """The first via-parm of a Via header value, parsed; the others are not looked at."""
    cut = cut_first_item(value)
    if cut is not None:
        return _parse_one_via(cut[0])
    items = split_commas(value)
    if not items:
        raise ValueError("bad Via: empty")
    return _parse_one_via(items[0])


# --------------------------------------------------------------------------------------------
# name-addr / addr-spec


class NameAddr:
    """A name-addr or addr-spec with its header parameters.

    ``display`` is the display name's text (quotes removed, escapes resolved), or None;
    ``uri`` the URI text as written; ``params`` the header parameters. (A plain class for
    the same reason as ``Via``.)
    """

    __slots__ = ("display", "params", "uri")

    def __init__(
        self, display: str | None, uri: str, params: dict[str, str | None] | None = None
    ) -> None:
        self.display = display
        self.uri = uri
        self.params: dict[str, str | None] = {} if params is None else params

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return (self.display == other.display and self.uri == other.uri
                and self.params == other.params)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NameAddr(display={self.display!r}, uri={self.uri!r}, params={self.params!r})"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        """The ``expires`` parameter as an int; ValueError if it is not a number."""
        v = self.params.get("expires")
        if v is None:
            return None
        if not v.isdigit():
            raise ValueError(f"bad expires parameter {v!r}")
        return int(v)

    @property
    def q(self) -> float | None:
        """The ``q`` parameter (0..1); ValueError if it is malformed."""
        v = self.params.get("q")
        if v is None:
            return None
        try:
            q = float(v)
        except ValueError:
            raise ValueError(f"bad q parameter {v!r}") from None
        if not 0.0 <= q <= 1.0 or not v[0].isdigit():
            raise ValueError(f"bad q parameter {v!r}")
        return q

    def copy(self) -> NameAddr:
        """A private copy (parsed values may be shared, see ``parse_name_addr``)."""
        return NameAddr(self.display, self.uri, dict(self.params))

    def to_string(self) -> str:
        """Always the name-addr form (``<uri>``), which is safe for any URI and params."""
        if self.display is None:
            head = f"<{self.uri}>"
        elif self.display and not _NEEDS_QUOTES_RE.search(self.display):
            head = f"{self.display} <{self.uri}>"
        else:
            head = f"{quote_string(self.display)} <{self.uri}>"
        return head + format_params(self.params)

    def __str__(self) -> str:
        return self.to_string()


_NA_CACHE: Final[dict[str, NameAddr]] = {}
_NA_CACHE_MAX: Final = 8192


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``[display] <uri> *(;param)`` or a bare ``addr-spec *(;param)``.

    Successful parses are kept in a bounded table (Route and Record-Route values repeat), so
    the result may be shared: do not modify it (``NameAddr.copy()`` first).
    """
    na = _NA_CACHE.get(value)
    if na is None:
        na = _parse_name_addr(value)
        if len(_NA_CACHE) >= _NA_CACHE_MAX:
            _NA_CACHE.clear()
        _NA_CACHE[value] = na
    return na


def _parse_name_addr(value: str) -> NameAddr:
    if _c_name_addr_parts is not None:
        got = _c_name_addr_parts(value)
        if got is not None:
            return NameAddr(None, got[0], got[1])
    return _parse_name_addr_py(value)


def _parse_name_addr_py(value: str) -> NameAddr:
    """Any name-addr or addr-spec; ``siprouter.sip._scan.name_addr_parts`` reads the common
    ``<uri>;k=v`` form the same way in C, when it is built."""
    text = value.strip()
    if not text:
        raise ValueError("bad name-addr: empty")
    display: str | None = None
    if text[0] == '"':
        m = _QUOTED_AT_RE.match(text)
        if m is None:
            raise ValueError(f"bad name-addr: unterminated quoted display name in {text[:40]!r}")
        display = unquote_string(m.group(0))
        pos = m.end()
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text) or text[pos] != "<":
            raise ValueError(f"bad name-addr: '<' expected after display name in {text[:40]!r}")
    else:
        pos = text.find("<")
        if pos < 0:
            return _parse_addr_spec(text)
        words = text[:pos].strip()
        if words:
            if _DISPLAY_TOKENS_RE.fullmatch(words) is None:
                raise ValueError(f"bad name-addr: display name {words!r} must be quoted")
            display = words
    end = text.find(">", pos + 1)
    if end < 0:
        raise ValueError(f"bad name-addr: missing '>' in {text[:40]!r}")
    uri = text[pos + 1 : end]
    _check_uri_text(uri)
    params = _params_to_end(text, end + 1, "name-addr")
    return NameAddr(display, uri, params)


def _check_uri_text(uri: str) -> None:
    if not uri or ":" not in uri or uri[0] == ":" or any_char_in(uri, _BAD_URI_CHARS):
        raise ValueError(f"bad name-addr: bad URI {uri!r}")


def _parse_addr_spec(text: str) -> NameAddr:
    # RFC 3261 §20.10: without <>, the URI may contain no ',', '?' or ';'; any ';' starts the
    # header parameters.
    semi = text.find(";")
    uri = (text if semi < 0 else text[:semi]).rstrip()
    if "?" in uri or "," in uri:
        raise ValueError(f"bad addr-spec: {uri!r} needs <> around it")
    _check_uri_text(uri)
    params = {} if semi < 0 else _params_to_end(text, semi, "addr-spec")
    return NameAddr(None, uri, params)


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Parse a comma-separated list of name-addrs (Route, Record-Route, Contact, ...)."""
    items = split_commas(value)
    if not items:
        raise ValueError("bad name-addr list: empty")
    return [parse_name_addr(item) for item in items]


def parse_contacts(values: list[str]) -> list[NameAddr] | Literal["*"]:
    """Parse all Contact header values; ``'*'`` only when it is the one and only contact."""
    items: list[str] = []
    for v in values:
        items.extend(split_commas(v))
    if "*" in items:
        if len(items) != 1:
            raise ValueError("bad Contact: '*' must be the only contact")
        return "*"
    return [parse_name_addr(item) for item in items]


# --------------------------------------------------------------------------------------------
# CSeq


def parse_cseq(value: str) -> tuple[int, str]:
    """``'4711 INVITE'`` -> ``(4711, 'INVITE')``; number 0..2**31-1 (RFC 3261 §8.1.1.5)."""
    m = _CSEQ_RE.fullmatch(value)
    if m is None:
        raise ValueError(f"bad CSeq: {value[:40]!r}")
    digits = m.group(1)
    if len(digits) > 10 or int(digits) > _MAX_CSEQ:
        raise ValueError(f"bad CSeq: number {digits!r} out of range")
    return int(digits), m.group(2)
