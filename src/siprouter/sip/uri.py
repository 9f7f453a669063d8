"""SIP, SIPS and tel URIs: parsing, rebuilding and comparison, sans-IO.

Implements the grammar of RFC 3261 §19.1.1 / §25.1 (``SIP-URI``, ``SIPS-URI``), IPv6 references
as RFC 5118 clarifies them, and enough of RFC 3966 (``tel:``) for routing. Comparison follows
RFC 3261 §19.1.4 rule by rule (see ``uri_equal``).

Representation (``SipURI``):

- ``scheme`` lower case: ``'sip'``, ``'sips'`` or ``'tel'``;
- ``user`` and ``password`` exactly as written (still %-escaped), or None;
- ``host`` as written (case kept; compare with ``uri_equal``); an IPv6 reference is stored
  *without* brackets, like every host in this package (``host_port()`` and ``str()`` add them);
  ``''`` for tel URIs;
- ``port`` int or None; ``params`` lower-case names, values as written (None = no value);
- ``headers`` names and values as written.

``parse_uri`` raises ``ValueError`` on bad syntax, and its subclass ``UnsupportedURIScheme``
(carrying ``scheme``) for a syntactically fine URI of a scheme other than sip/sips/tel, so that
request validation can answer 416 rather than 400.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

from ..native import native
from .charset import ALNUM, char_table, chars_in

__all__ = ["SipURI", "UnsupportedURIScheme", "check_uri", "normalize_ipv6", "parse_uri",
           "uri_equal"]

_HEX2 = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# user = 1*( unreserved / escaped / user-unreserved ); user-unreserved = & = + $ , ; ? /
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_HEX2})+")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_HEX2})*")
# paramchar = param-unreserved / unreserved / escaped; param-unreserved = [ ] / : & + $
_PARAMCHARS_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_HEX2})+")
# hname / hvalue: hnv-unreserved = [ ] / ? : + $
_HNAME_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_HEX2})+")
_HVALUE_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_HEX2})*")
# hostport = ( "[" IPv6 "]" / hostname / IPv4address ) [ ":" port ]; '_' tolerated in
# hostnames as deployed; the IPv6 literal is checked by normalize_ipv6.
_HOSTPORT_RE = re.compile(
    r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_.])?))(?::([0-9]+))?"
)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# the characters of a hostname or IPv4 host, for _scan_hostport
_HOST_CHARS: Final = char_table(ALNUM + "-_.")
# RFC 3966 telephone-subscriber, leniently: digits, hex digits, visual separators, '*', '#', '+'
_TEL_NUMBER_RE = re.compile(rf"(?:[0-9A-Fa-f*#+\-.()pPwW]|{_HEX2})+")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# the same classes without escapes, for the fast half of each check (charset.py)
_UNRESERVED_CHARS = ALNUM + "-_.!~*'()"
_USER_CHARS: Final = char_table(_UNRESERVED_CHARS + "&=+$,;?/")
_PARAM_CHARS: Final = char_table(_UNRESERVED_CHARS + "[]/:&+$")
_TEL_VISUAL_RE = re.compile(r"[\-.()]")

# RFC 3261 §19.1.4: these parameters must match when present in either URI.
_STRICT_PARAMS = ("user", "ttl", "method", "maddr", "transport")
# RFC 3261 §19.1.2 / §25.1: reserved = ; / ? : @ & = + $ ,
_RESERVED = frozenset(";/?:@&=+$,")


def normalize_ipv6(text: str) -> str:
    """Return the compressed form of an IPv6 literal (no brackets); ValueError if invalid.

    RFC 5118 §4.10: RFC 3261's ABNF also derives ``2001:db8:::192.0.2.1`` (three colons
    before an embedded IPv4 address), and implementations must tolerate it; it is read as
    the same address with two colons. No other deviation from RFC 4291 is accepted.
    """
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        pass
    head, sep, tail = text.rpartition(":::")
    if sep and "." in tail and ":" not in tail:
        try:
            return str(ipaddress.IPv6Address(f"{head}::{tail}"))
        except ValueError:
            pass
    raise ValueError(f"invalid IPv6 address {text!r}")


class UnsupportedURIScheme(ValueError):
    """The URI's scheme is not sip, sips or tel (RFC 3261 §8.2.2.1: answer 416)."""

    def __init__(self, scheme: str) -> None:
        super().__init__(f"unsupported URI scheme {scheme!r}")
        self.scheme = scheme


class SipURI:
    """A parsed sip/sips/tel URI. Mutable; ``str()`` rebuilds the text."""

    __slots__ = ("headers", "host", "params", "password", "port", "scheme", "user")

    def __init__(
        self,
        scheme: str = "sip",
        user: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params
        self.headers: dict[str, str] = {} if headers is None else headers

    def copy(self) -> SipURI:
        """A private copy (parsed URIs may be shared, see ``parse_uri``)."""
        return SipURI(self.scheme, self.user, self.host, self.port, dict(self.params),
                      dict(self.headers), self.password)

    def host_port(self) -> str:
        """``host[:port]`` with an IPv6 host bracketed."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def transport(self) -> str:
        """The ``transport`` parameter, lower case; default 'tls' for sips, else 'udp'."""
        t = self.params.get("transport")
        if t:
            return t.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.scheme == "tel":
            parts.append(self.user or "")
        else:
            if self.user is not None:
                parts.append(self.user)
                if self.password is not None:
                    parts += (":", self.password)
                parts.append("@")
            parts.append(self.host_port())
        for k, v in self.params.items():
            parts += (";", k) if v is None else (";", k, "=", v)
        if self.headers:
            parts.append("?")
            parts.append("&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SipURI({str(self)!r})"


def _parse_params(text: str, uri: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not chars_in(name, _PARAM_CHARS) and _PARAMCHARS_RE.fullmatch(name) is None:
            raise ValueError(f"bad URI parameter {item!r} in {uri!r}")
        if eq:
            if not chars_in(value, _PARAM_CHARS) and _PARAMCHARS_RE.fullmatch(value) is None:
                raise ValueError(f"bad URI parameter value {item!r} in {uri!r}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _parse_headers(text: str, uri: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not eq or _HNAME_RE.fullmatch(name) is None or _HVALUE_RE.fullmatch(value) is None:
            raise ValueError(f"bad URI header {item!r} in {uri!r}")
        headers[name] = value
    return headers


def _parse_tel(rest: str, text: str) -> SipURI:
    number, semi, ptext = rest.partition(";")
    if _TEL_NUMBER_RE.fullmatch(number) is None:
        raise ValueError(f"bad tel URI {text!r}")
    return SipURI("tel", number, "", None, _parse_params(ptext, text) if semi else {})


# Parsed URIs repeat (our own Record-Route values, registered contacts, domains): successful
# parses are kept in a bounded table. The objects handed out are shared, so callers treat a
# parsed URI as read-only and ``copy()`` it before changing it.
_URI_CACHE: Final[dict[str, SipURI]] = {}
_URI_CACHE_MAX: Final = 8192


def parse_uri(text: str) -> SipURI:
    """Parse a sip:, sips: or tel: URI; ValueError (UnsupportedURIScheme) otherwise.

    The result may be shared with other callers: do not modify it (use ``copy()``).
    """
    u = _URI_CACHE.get(text)
    if u is None:
        u = _parse_uri(text)
        if len(_URI_CACHE) >= _URI_CACHE_MAX:
            _URI_CACHE.clear()
        _URI_CACHE[text] = u
    return u


_c_uri_ok: Final[Callable[[str], bool | None] | None] = native("siprouter.sip._scan", "uri_ok")


def check_uri(text: str) -> None:
    """:func:`parse_uri` for its verdict only: raises what it raises, and builds nothing for a
    sip:/sips: URI of the common form (``siprouter.sip._scan.uri_ok``), which it accepts."""
    if _c_uri_ok is not None and _c_uri_ok(text) is not None:
        return
    parse_uri(text)


def _scan_hostport(rest: str) -> int:
    """Where the hostport at the start of ``rest`` ends, for the common forms only: a
    hostname or IPv4 host (``[A-Za-z0-9_]``, then ``[A-Za-z0-9_.-]``, not ending in '-'),
    then ``:digits`` or nothing, then the end or ';' or '?'. 0 for anything else (an IPv6
    reference, a bad host, a ':' without digits...): ``_HOSTPORT_RE`` then decides, and gives
    the errors. Where it gives an end, the regex matches the same host and port."""
    table = _HOST_CHARS
    n = len(rest)
    i = 0
    while i < n:
        c = ord(rest[i])
        if c > 127 or not table[c]:
            break
        i += 1
    if i == 0:
        return 0
    c = ord(rest[0])
    if c == 45 or c == 46 or ord(rest[i - 1]) == 45:  # '-' or '.' first, '-' last
        return 0
    if i < n and ord(rest[i]) == 58:  # ':'
        j = i + 1
        while j < n:
            c = ord(rest[j])
            if c < 48 or c > 57:
                break
            j += 1
        if j == i + 1:
            return 0
        i = j
    if i < n:
        c = ord(rest[i])
        if c != 59 and c != 63:  # ';' '?'
            return 0
    return i


# The common sip:/sips: form read in C (siprouter/sip/_scan.c), built with the compiled hot path:
# (scheme, user, host, port, params), or None when _parse_uri_py must read the text.
_UriParts = Callable[[str], tuple[str, str | None, str, int | None, dict[str, str | None]] | None]
_c_uri_parts: Final[_UriParts | None] = native("siprouter.sip._scan", "uri_parts")


def _parse_uri(text: str) -> SipURI:
    if _c_uri_parts is not None:
        got = _c_uri_parts(text)
        if got is not None:
            return SipURI(got[0], got[1], got[2], got[3], got[4], {}, None)
    return _parse_uri_py(text)


def _parse_uri_py(text: str) -> SipURI:
    """Any URI; ``siprouter.sip._scan.uri_parts`` reads the common sip:/sips: form the same
    way in C, when it is built."""
    scheme, colon, rest = text.partition(":")
    if not colon:
        raise ValueError(f"bad URI {text[:60]!r}: no scheme")
    low = scheme.lower()
    if low not in ("sip", "sips", "tel") and _SCHEME_RE.fullmatch(scheme) is None:
        raise ValueError(f"bad URI {text[:60]!r}: no scheme")
    scheme = low
    if scheme not in ("sip", "sips"):
        if scheme == "tel":
            return _parse_tel(rest, text)
        if any(c in rest for c in ' \t\r\n<>"') or not rest:
            raise ValueError(f"bad URI {text[:60]!r}")
        raise UnsupportedURIScheme(scheme)

    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not chars_in(user, _USER_CHARS) and _USER_RE.fullmatch(user) is None:
            raise ValueError(f"bad user part in URI {text[:60]!r}")
        if colon:
            if _PASSWORD_RE.fullmatch(pw) is None:
                raise ValueError(f"bad password in URI {text[:60]!r}")
            password = pw

    # hostport
    hp_end = _scan_hostport(rest)
    if hp_end > 0:  # a hostname or IPv4 host, with a port or not: read without the regex
        pc = rest.find(":", 0, hp_end)
        host = rest[:hp_end] if pc < 0 else rest[:pc]
        digits: str | None = None if pc < 0 else rest[pc + 1 : hp_end]
    else:
        m = _HOSTPORT_RE.match(rest)
        if m is None:
            raise ValueError(f"bad host in URI {text[:60]!r}")
        v6, name, digits = m.groups()  # one of v6 and name is None
        if v6 is not None:
            try:
                normalize_ipv6(v6)
            except ValueError:
                raise ValueError(f"bad IPv6 reference in URI {text[:60]!r}") from None
            host = v6
        else:
            host = name
        hp_end = m.end()
    port: int | None = None
    if digits is not None:
        port = int(digits) if len(digits) <= 5 else 65536  # ASCII digits, both paths
        if port > 65535:
            raise ValueError(f"bad port in URI {text[:60]!r}")
    tail = rest[hp_end:]
    if tail and tail[0] not in ";?":
        raise ValueError(f"bad URI {text[:60]!r}: unexpected {tail[:20]!r}")

    params: dict[str, str | None] = {}
    headers: dict[str, str] = {}
    if tail:
        ptext, q, htext = tail.partition("?")
        if ptext:
            params = _parse_params(ptext[1:], text)
        if q:
            headers = _parse_headers(htext, text)
    return SipURI(scheme, user, host, port, params, headers, password)


# --------------------------------------------------------------------------------------------
# comparison (RFC 3261 §19.1.4)


def _norm(text: str) -> str:
    """Resolve %XX escapes of characters outside the reserved set (which are equivalent to
    the character itself); keep escaped reserved characters escaped, hex in upper case."""
    if "%" not in text:
        return text

    def repl(m: re.Match[str]) -> str:
        c = chr(int(m.group(1), 16))
        if c in _RESERVED or c == "%" or ord(c) < 0x21 or ord(c) > 0x7E:
            return "%" + m.group(1).upper()
        return c

    return _ESCAPE_RE.sub(repl, text)


def _norm_ci(text: str | None) -> str | None:
    return None if text is None else _norm(text).lower()


def _host_key(host: str) -> str:
    if ":" in host:
        try:
            return normalize_ipv6(host)
        except ValueError:
            return host.lower()
    return host.lower()


def _params_equal(a: dict[str, str | None], b: dict[str, str | None]) -> bool:
    for name in _STRICT_PARAMS:
        if (name in a or name in b) and (
            name not in a or name not in b or _norm_ci(a[name]) != _norm_ci(b[name])
        ):
            return False
    for name, value in a.items():
        if name in b and name not in _STRICT_PARAMS and _norm_ci(value) != _norm_ci(b[name]):
            return False
    return True


def _headers_key(h: dict[str, str]) -> dict[str, str]:
    return {_norm(k).lower(): _norm(v).lower() for k, v in h.items()}


def uri_equal(a: SipURI | str, b: SipURI | str) -> bool:
    """RFC 3261 §19.1.4 URI equality.

    - sip and sips URIs are never equal; schemes compare case-insensitively;
    - userinfo (user and password) compares case-sensitively, after resolving escapes;
    - hosts compare case-insensitively (IPv6 literals as addresses); ports must both be
      absent or equal (an absent port does not equal 5060);
    - user, ttl, method, maddr and transport parameters must match if present in either URI;
      other parameters are compared only when present in both; names and values
      case-insensitively;
    - headers must all be present in both and match (case-insensitively).
    tel URIs (RFC 3966 §4) compare their numbers without visual separators, and all params.
    Strings are parsed first (ValueError if they do not parse).
    """
    x = parse_uri(a) if isinstance(a, str) else a
    y = parse_uri(b) if isinstance(b, str) else b
    if x.scheme != y.scheme:
        return False
    if x.scheme == "tel":
        return _TEL_VISUAL_RE.sub("", _norm(x.user or "")).lower() == _TEL_VISUAL_RE.sub(
            "", _norm(y.user or "")
        ).lower() and {k: _norm_ci(v) for k, v in x.params.items()} == {
            k: _norm_ci(v) for k, v in y.params.items()
        }
    if (x.user is None) != (y.user is None) or (
        x.user is not None and y.user is not None and _norm(x.user) != _norm(y.user)
    ):
        return False
    if (x.password is None) != (y.password is None) or (
        x.password is not None and y.password is not None and _norm(x.password) != _norm(y.password)
    ):
        return False
    if _host_key(x.host) != _host_key(y.host) or x.port != y.port:
        return False
    if not _params_equal(x.params, y.params):
        return False
    return _headers_key(x.headers) == _headers_key(y.headers)
