"""SIP message model: a lazy, exact parser and a serializer that keeps untouched bytes.

Theory of operation
-------------------
A message keeps the bytes it arrived with. Parsing frames the start line, splits the header
section into lines (unfolding continuation lines) and records, for every header line, its
canonical lower-case name, its value text and the raw line it came from. Nothing inside a
header value is parsed until somebody asks (``via1``, ``from_tag``, ``cseq_num`` ... are
computed on first access and cached).

Internally the header section is held as ``str`` decoded as ISO-8859-1, which maps each byte to
one code point: offsets and lengths stay those of the bytes, decoding costs next to nothing, and
encoding back gives the very same bytes. Values handed to callers are re-decoded as UTF-8 only
when they hold non-ASCII characters, and values set by callers are brought into the same
byte-per-code-point form, so a serialized message is always valid UTF-8 where its parts were.

Edits (add, remove, replace a header; change the Request-URI or the body) change the header
entry list; an entry that was not touched keeps its raw line, so it leaves byte-for-byte as it
came (the equivalent of Kamailio's "lumps"). ``to_bytes()`` of an unedited message returns the
original bytes.

Errors: anything that cannot be framed raises :class:`ParseError`, which carries the SIP status
owed to the sender (400, 413, 505 ...) or 0 when no answer can be sent (an unparseable
response, a start line that is not SIP at all). Rules about header *values* (a CSeq method that
differs from the request method, a missing Call-ID ...) are checked by ``sip.validate``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ..native import native
from .headers import (
    Via,
    cut_first_item,
    parse_first_via,
    parse_via,
    parse_via_items,
    split_commas,
)

# The header-line index in C (siprouter/sip/_scan.c), built with the compiled hot path; a pure
# Python install does the same work in _fast_headers.
_IndexHeaders = Callable[[str, dict[str, tuple[str, str]], int, int],
                         list[list[str | None]] | None]
_c_index_headers: Final[_IndexHeaders | None] = native("siprouter.sip._scan", "index_headers")
# SipMessage.to_bytes in C when built (None when some part needs the Python path)
_Serialize = Callable[[str, list[list[str | None]], bytes, dict[str, str]], bytes | None]
_c_serialize: Final[_Serialize | None] = native("siprouter.sip._scan", "serialize")
# the same function writing a response from a request's entries (see SipMessage.response_bytes)
_Respond = Callable[[str, list[list[str | None]], bytes, dict[str, str], frozenset[str],
                     str | None, str], bytes | None]
_c_respond: Final[_Respond | None] = native("siprouter.sip._scan", "serialize")
_ValuesHash = Callable[[str, str, list[list[str | None]], frozenset[str]], str | None]
_c_values_hash: Final[_ValuesHash | None] = native("siprouter.sip._scan", "values_hash")
_c_is_ascii: Final[Callable[[str], bool] | None] = native("siprouter.sip._scan", "is_ascii")
# parse_message's start line and header section in C, for the common form (see _scan.c)
_Head = Callable[[str, int, dict[str, tuple[str, str]]],
                 tuple[str, str, str, int, list[list[str | None]], int, int, int, bool] | None]
_c_head: Final[_Head | None] = native("siprouter.sip._scan", "head")
_c_tag_of: Final[Callable[[str], str | None] | None] = native("siprouter.sip._scan", "tag_of")
# the top Via's branch and the CSeq read from the text in C (None: ask the Python path)
_c_via_branch: Final[Callable[[str], str | None] | None] = native(
    "siprouter.sip._scan", "via_branch"
)
_c_cseq: Final[Callable[[str, dict[str, str]], tuple[int, str] | None] | None] = native(
    "siprouter.sip._scan", "cseq"
)

__all__ = [
    "COMPACT_FORMS",
    "ParseError",
    "SipMessage",
    "canonical_name",
    "display_name",
    "parse_message",
]


class ParseError(ValueError):
    """A message that cannot be framed; ``status`` is the SIP status owed (0: drop silently)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status
        self.reason = reason


# RFC 3261 §7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS: Final[dict[str, str]] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Header names written by us, in their conventional spelling.
_DISPLAY: Final[dict[str, str]] = {
    "via": "Via",
    "from": "From",
    "to": "To",
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "contact": "Contact",
    "max-forwards": "Max-Forwards",
    "record-route": "Record-Route",
    "route": "Route",
    "content-length": "Content-Length",
    "content-type": "Content-Type",
    "www-authenticate": "WWW-Authenticate",
    "proxy-authenticate": "Proxy-Authenticate",
    "authorization": "Authorization",
    "proxy-authorization": "Proxy-Authorization",
    "user-agent": "User-Agent",
    "server": "Server",
    "expires": "Expires",
    "min-expires": "Min-Expires",
    "allow": "Allow",
    "supported": "Supported",
    "unsupported": "Unsupported",
    "require": "Require",
    "proxy-require": "Proxy-Require",
    "timestamp": "Timestamp",
    "date": "Date",
    "path": "Path",
    "reason": "Reason",
    "retry-after": "Retry-After",
}

_name_cache: Final[dict[str, str]] = {}


def canonical_name(name: str) -> str:
    """Lower-case full header name for ``name`` (compact forms expanded)."""
    c = _name_cache.get(name)
    if c is None:
        low = name.strip().lower()
        c = COMPACT_FORMS.get(low, low)
        if len(_name_cache) < 4096:
            _name_cache[name] = c
    return c


def display_name(name: str) -> str:
    """Conventional spelling of a header name (``call-id`` -> ``Call-ID``)."""
    c = canonical_name(name)
    d = _DISPLAY.get(c)
    if d is not None:
        return d
    return "-".join(p[:1].upper() + p[1:] for p in c.split("-"))


def is_ascii(text: str) -> bool:
    """``text.isascii()``; in C when built (a str method is a generic method call from
    compiled code)."""
    return _c_is_ascii(text) if _c_is_ascii is not None else text.isascii()


def _to_wire(text: str) -> str:
    """Bring a caller's text into the byte-per-code-point (ISO-8859-1) form used inside."""
    if is_ascii(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _from_wire(text: str) -> str:
    """Turn internal byte-per-code-point text back into what the bytes mean (UTF-8)."""
    if is_ascii(text):
        return text
    return text.encode("latin-1").decode("utf-8", "replace")


_SIP20: Final = "SIP/2.0"
_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
# The largest Content-Length we will believe; anything beyond a datagram or our stream limit is
# refused by the caller with 413 anyway (RFC 3261 §20.14 allows any non-negative integer).
_MAX_CL_DIGITS: Final = 10


class SipMessage:
    """A parsed SIP request or response; see the module docstring."""

    __slots__ = (
        "_ascii",
        "_body",
        "_body_edited",
        "_cseq_method",
        "_cseq_num",
        "_body_at",
        "_crlf",
        "_cut_at",
        "_cut_len",
        "_hdr_at",
        "_edited",
        "_first",
        "_put",
        "_ftag",
        "_hl",
        "_reason",
        "_ruri",
        "_ttag",
        "_via1",
        "_vias",
        "cache",
        "is_request",
        "method",
        "raw",
        "status",
        "version",
    )

    raw: bytes
    is_request: bool
    method: str
    status: int
    version: str

    def __init__(self) -> None:
        self.raw = b""
        self.is_request = True
        self.method = ""
        self._ruri = ""
        self.status = 0
        self._reason = ""
        self.version = _SIP20
        self._first = ""
        # header entries, or None when dropped by compact() (rebuilt from ``raw`` on use);
        # entries: [canonical name, value (internal form), raw line or None, written name or None]
        # (the raw line is None once edited, and when it is "written name: value" exactly).
        # An entry is never changed in place: an edit puts a new one in its slot, so that a
        # copy() can share the entries with the message it was made from
        self._hl: list[list[str | None]] | None = []
        # every value in the header entries is ASCII (then wire form and caller form are the
        # same text, and no value needs a look of its own)
        self._ascii = True
        self._body = b""
        self._edited = False
        self._body_edited = False
        # the one edit since parsing, when it is the removal of the first value of a header
        # line (the proxy popping its own Via off a response): where the line as received
        # starts in ``raw`` (-1: no such edit), its length, and the line that replaces it
        # (None: the line went). to_bytes() then splices ``raw`` instead of writing every line
        # again
        self._cut_at = -1
        self._cut_len = 0
        self._put: str | None = None
        # where the first header line and the body start in ``raw`` (-1: not known)
        self._hdr_at = -1
        self._body_at = -1
        # every entry is one line of ``raw`` ended by CRLF, in order from ``_hdr_at`` (what
        # sip._scan.head reads), as long as nothing is edited
        self._crlf = False
        self._via1: Via | None = None
        self._vias: list[Via] | None = None
        # the CSeq read (cseq_num, cseq_method): _cseq_num is -1 until then
        self._cseq_num = -1
        self._cseq_method = ""
        self._ftag: str | bool | None = False
        self._ttag: str | bool | None = False
        self.cache: dict[str, object] | None = None  # free per-message scratch for upper layers

    @property
    def _hdrs(self) -> list[list[str | None]]:
        hl = self._hl
        if hl is None:
            hl = self._hl = _index_headers(self.raw)
            self._ascii = self.raw.isascii()
        return hl

    @_hdrs.setter
    def _hdrs(self, value: list[list[str | None]]) -> None:
        self._hl = value

    def compact(self) -> None:
        """Drop the parsed header index of a message that is kept but rarely read again.

        A transaction keeps its messages for up to 64*T1 after it ends; their header lists were
        most of a call's memory. Edits are applied to ``raw`` first; the next accessor rebuilds
        the index from the bytes, so nothing visible changes."""
        if self._edited:
            self.mark_sent(self.to_bytes())
        else:
            self._hl = None
            self._via1 = None
            self._vias = None

    def mark_sent(self, data: bytes) -> None:
        """``data`` is this message serialized (``to_bytes()``): keep it as the raw form and
        drop the header index (see :meth:`compact`)."""
        self.raw = data
        self._edited = False
        self._body_edited = False
        self._cut_at = -1
        self._hdr_at = self._body_at = -1
        self._crlf = False
        self._hl = None
        self._via1 = None
        self._vias = None

    # -- start line -----------------------------------------------------------------------------
    @property
    def ruri(self) -> str:
        return _from_wire(self._ruri)

    @ruri.setter
    def ruri(self, value: str) -> None:
        if not self.is_request:
            raise ValueError("a response has no Request-URI")
        value = value.strip()
        if not value or " " in value or "\r" in value or "\n" in value:
            raise ValueError(f"invalid Request-URI: {value!r}")
        self._ruri = _to_wire(value)
        self._first = ""
        self._edited = True
        self._cut_at = -1

    @property
    def reason(self) -> str:
        return _from_wire(self._reason)

    def first_line(self) -> str:
        if self.is_request:
            return f"{self.method} {self.ruri} {self.version}"
        return f"{self.version} {self.status} {self.reason}"

    # -- body -----------------------------------------------------------------------------------
    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, value: bytes) -> None:
        self._body = bytes(value)
        self._body_edited = True
        self._edited = True
        self._cut_at = -1
        self.set("Content-Length", str(len(self._body)))

    # -- header access ----------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        """Value of the first line of header ``name`` (unfolded, stripped), or None."""
        return self.value_of(_name_cache.get(name) or canonical_name(name))

    def value_of(self, c: str) -> str | None:
        """:meth:`get` for a canonical name ``c`` (lower case, full form: "via", "call-id"),
        without looking the name up first."""
        for h in self._hdrs:
            if h[0] == c:
                v = h[1]
                assert v is not None
                return v if self._ascii or is_ascii(v) else _from_wire(v)
        return None

    def get_all(self, name: str) -> list[str]:
        """Values of every line of header ``name``, in order."""
        c = _name_cache.get(name) or canonical_name(name)
        if self._ascii:
            return [h[1] for h in self._hdrs if h[0] == c]  # type: ignore[misc]
        return [_from_wire(h[1]) for h in self._hdrs if h[0] == c]  # type: ignore[arg-type]

    def values(self, name: str) -> list[str]:
        """Comma-separated values over every line of header ``name`` (quotes and <> respected)."""
        out: list[str] = []
        for v in self.get_all(name):
            out.extend(split_commas(v))
        return out

    def has(self, name: str) -> bool:
        c = _name_cache.get(name) or canonical_name(name)
        for h in self._hdrs:
            if h[0] == c:
                return True
        return False

    def count(self, name: str) -> int:
        c = canonical_name(name)
        return sum(1 for h in self._hdrs if h[0] == c)

    def header_names(self) -> list[str]:
        """Canonical names of the header lines, in order (repeats kept)."""
        return [h[0] for h in self._hdrs]  # type: ignore[misc]

    def headers(self) -> list[tuple[str, str]]:
        """``(name as written, value)`` for every header line, in order."""
        out = []
        for h in self._hdrs:
            written = h[3] or display_name(h[0])  # type: ignore[arg-type]
            out.append((_from_wire(written), _from_wire(h[1])))  # type: ignore[arg-type]
        return out

    def header_items(self) -> list[tuple[str, str]]:
        """``(canonical name, value)`` of every line in wire form (one code point per byte).

        For code that copies values from one message into another byte-for-byte."""
        return [(h[0], h[1]) for h in self._hdrs]  # type: ignore[misc]

    def wire_lines_of(self, names: frozenset[str]) -> list[str]:
        """Every header line whose canonical name is in ``names``, without its line end, as
        :meth:`to_bytes` writes it: as received (name spelling, compact form, folding) unless
        edited since, in wire form."""
        return [_line_of(h) for h in self._hdrs if h[0] in names]

    def values_hash(self, names: frozenset[str], first: str, second: str) -> str | None:
        """A 60-bit hash in decimal of ``first``, ``second`` and the wire values of every line
        whose canonical name is in ``names``, in order (``siprouter.sip._scan.values_hash``);
        None when the C helper is not built or the text is not one byte per code point."""
        if _c_values_hash is None:
            return None
        return _c_values_hash(first, second, self._hdrs, names)

    def wire_named_lines_of(self, names: frozenset[str]) -> list[tuple[str, str, str]]:
        """``(canonical name, wire-form value, line)`` of every line whose canonical name is in
        ``names``, the line as :meth:`wire_lines_of` gives it."""
        return [(h[0], h[1], _line_of(h))  # type: ignore[misc]
                for h in self._hdrs if h[0] in names]

    def response_bytes(self, first: str, names: frozenset[str], to_tag: str | None, tail: str,
                       body: bytes) -> bytes | None:
        """A response to this request written in one go (``siprouter.sip._scan.serialize``):
        the status line ``first``, the lines of :meth:`wire_lines_of` ``names``, each "to" one
        as ``To: value;tag=to_tag`` when ``to_tag`` is given, then ``tail`` and ``body``. None
        when the C helper is not built or declines (``build._response_py`` writes it then)."""
        if _c_respond is None:
            return None
        return _c_respond(first, self._hdrs, body, _DISPLAY, names, to_tag, tail)

    def wire_values_of(self, names: frozenset[str]) -> list[str]:
        """Wire-form values of every line whose canonical name is in ``names``, in order."""
        return [h[1] for h in self._hdrs if h[0] in names]  # type: ignore[misc]

    def _invalidate(self, c: str) -> None:
        self._edited = True
        self._cut_at = -1
        if c == "via":
            self._via1 = None
            self._vias = None
        elif c == "cseq":
            self._cseq_num = -1
        elif c == "from":
            self._ftag = False
        elif c == "to":
            self._ttag = False

    def _check_value(self, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("a header value may not contain CR or LF")
        v = value.strip()
        if is_ascii(v):
            return v
        self._ascii = False
        return _to_wire(v)

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Append a header line after the last one (or before every header with ``first``)."""
        c = canonical_name(name)
        entry: list[str | None] = [c, self._check_value(value), None, _to_wire(name.strip())]
        if first:
            self._hdrs.insert(0, entry)
        else:
            self._hdrs.append(entry)
        self._invalidate(c)

    def insert_at(self, index: int, name: str, value: str) -> None:
        """Insert a header line at position ``index`` of the header lines (see
        ``header_names()``; out-of-range indexes clamp to the ends)."""
        c = canonical_name(name)
        entry: list[str | None] = [c, self._check_value(value), None, _to_wire(name.strip())]
        self._hdrs.insert(max(0, index), entry)
        self._invalidate(c)

    def insert_top(self, name: str, value: str) -> None:
        """Insert a line as the first instance of header ``name`` (Via, Record-Route ...)."""
        self.insert_top_wire(canonical_name(name), self._check_value(value))

    def insert_top_wire(self, c: str, v: str) -> None:
        """:meth:`insert_top` for the canonical name ``c`` and a value already in wire form
        (the proxy's own text, as for :meth:`replace_first_wire`)."""
        entry: list[str | None] = [c, v, None, None]
        hdrs = self._hdrs
        for i, h in enumerate(hdrs):
            if h[0] == c:
                hdrs.insert(i, entry)
                break
        else:
            # No such header yet: Via goes first of all, others after the last header.
            if c == "via":
                hdrs.insert(0, entry)
            else:
                hdrs.append(entry)
        self._invalidate(c)

    def push_via(self, via: Via, text: str | None = None) -> None:
        """Insert ``via`` as the new top Via (a proxy's own; no reparse of what we wrote);
        ``text``: its value as written already (``via.to_string()``, ASCII)."""
        if text is None:
            self.insert_top("Via", via.to_string())
        else:
            self.insert_top_wire("via", text)
        self._via1 = via

    def remove(self, name: str) -> int:
        """Remove every line of header ``name``; returns how many were removed."""
        c = canonical_name(name)
        before = len(self._hdrs)
        self._hdrs = [h for h in self._hdrs if h[0] != c]
        n = before - len(self._hdrs)
        if n:
            self._invalidate(c)
        return n

    def remove_first_value(self, name: str) -> str | None:
        """Remove the first comma-separated value of header ``name`` and return it."""
        c = canonical_name(name)
        hdrs = self._hdrs
        for i, h in enumerate(hdrs):
            if h[0] == c:
                v = h[1]
                assert v is not None
                cut = cut_first_item(v)
                if cut is not None and "," not in cut[1]:
                    # one item, or two (a response's Via: ours and the next): what the general
                    # case below gives, without splitting and joining
                    at = -1 if self._edited else self._line_at(i)
                    size = _line_len(h) if at >= 0 else 0
                    rest = cut[1]
                    if rest:
                        h = hdrs[i] = [c, rest, None, h[3]]
                    else:
                        del hdrs[i]
                    self._invalidate(c)
                    if at >= 0:
                        self._cut_at, self._cut_len = at, size
                        self._put = _written_line(h) if rest else None
                    return _from_wire(cut[0])
                parts = split_commas(v)
                if len(parts) <= 1:
                    del hdrs[i]
                else:
                    hdrs[i] = [c, ", ".join(parts[1:]), None, h[3]]
                self._invalidate(c)
                return _from_wire(parts[0]) if parts else None
        return None

    def set(self, name: str, value: str) -> None:
        """Replace every line of header ``name`` with one line holding ``value``."""
        c = canonical_name(name)
        v = self._check_value(value)
        hdrs = self._hdrs
        found = -1
        for i, h in enumerate(hdrs):
            if h[0] == c:
                found = i
                break
        if found < 0:
            hdrs.append([c, v, None, None])
        else:
            old = hdrs[found]
            hdrs[found] = [c, v, None, old[3]]
            if any(h[0] == c for h in hdrs[found + 1 :]):
                self._hdrs = hdrs[: found + 1] + [h for h in hdrs[found + 1 :] if h[0] != c]
        self._invalidate(c)

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first line of header ``name`` (appending it when absent)."""
        self.replace_first_wire(canonical_name(name), self._check_value(value))

    def replace_first_wire(self, c: str, v: str) -> None:
        """:meth:`replace_first` for the canonical name ``c`` and a value already in wire
        form: the proxy's own edits (Max-Forwards, the top Via's received/rport), made of text
        that came in on a header line or of digits and addresses, with no CR/LF and stripped."""
        hdrs = self._hdrs
        for i, h in enumerate(hdrs):
            if h[0] == c:
                hdrs[i] = [c, v, None, h[3]]
                self._invalidate(c)
                return
        hdrs.append([c, v, None, None])
        self._invalidate(c)

    # -- cached typed accessors -------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        v = self.value_of("call-id")
        return v if v is not None else ""

    def _parse_cseq(self) -> None:
        v = self.value_of("cseq")
        if v is None:
            raise ValueError("no CSeq header")
        c = _c_cseq(v, _METHOD_NAMES) if _c_cseq is not None else None
        if c is None:
            c = _cseq_py(v)
        self._cseq_method = c[1]
        self._cseq_num = c[0]

    @property
    def cseq_num(self) -> int:
        if self._cseq_num < 0:
            self._parse_cseq()
        return self._cseq_num

    @property
    def cseq_method(self) -> str:
        if self._cseq_num < 0:
            self._parse_cseq()
        return self._cseq_method

    @property
    def via1(self) -> Via:
        """The top Via, parsed (ValueError when missing or malformed). Only the first via-parm
        is parsed: a proxy reads no other (``vias`` parses and checks them all)."""
        v = self._via1
        if v is None:
            raw = self.value_of("via")
            if raw is None:
                raise ValueError("no Via header")
            v = self._via1 = parse_first_via(raw)
        return v

    @property
    def vias(self) -> list[Via]:
        """Every Via, parsed (cached until a Via is edited; ValueError when one is bad)."""
        out = self._vias
        if out is None and self._via1 is not None:
            # one Via line of one via-parm (no comma), parsed already: nothing else to read
            only: str | None = None
            for h in self._hdrs:
                if h[0] == "via":
                    if only is not None:
                        only = None
                        break
                    only = h[1]
            if only is not None and "," not in only:
                out = self._vias = [self._via1]
                return out
        if out is None:
            out = []
            top = self._via1
            for v in self.get_all("via"):
                if top is None:
                    out.extend(parse_via(v))
                else:  # the top via-parm is parsed already (and maybe edited in place)
                    items = split_commas(v)
                    if not items:
                        raise ValueError("bad Via: empty")
                    out.append(top)
                    out.extend(parse_via_items(items[1:]))
                    top = None
            self._vias = out
            if out:
                self._via1 = out[0]
        return out

    @property
    def branch(self) -> str | None:
        """Branch parameter of the top Via (None when absent or unparseable)."""
        try:
            return self.via1.branch
        except ValueError:
            return None

    def top_branch(self) -> str | None:
        """The branch of the top Via, for matching a response to its transaction: read from
        the text when the first via-parm has exactly one ``branch`` parameter (any case) with a
        plain value, else as :attr:`branch` reads it. (A top Via that is malformed elsewhere
        still gives its branch here; it matches only a branch we generated.)"""
        v = self._via1
        if v is not None:
            return v.params.get("branch")
        raw = self.value_of("via")
        if raw is None:
            return None
        b = _c_via_branch(raw) if _c_via_branch is not None else _via_branch_py(raw)
        return b if b is not None else self.branch

    @property
    def from_tag(self) -> str | None:
        t = self._ftag
        if t is False:
            t = self._ftag = _tag_of(self.value_of("from"))
        return t  # type: ignore[return-value]

    @property
    def to_tag(self) -> str | None:
        t = self._ttag
        if t is False:
            t = self._ttag = _tag_of(self.value_of("to"))
        return t  # type: ignore[return-value]

    # -- serialization --------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        if not self._edited:
            return self.raw
        if self._cut_at >= 0:
            data = self._raw_spliced()
            if data is not None:
                return data
        first = self._first
        if not first:
            if self.is_request:
                first = f"{self.method} {self._ruri} {self.version}"
            else:
                first = f"{self.version} {self.status} {self._reason}"
            self._first = first
        if _c_serialize is not None:
            data = _c_serialize(first, self._hdrs, self._body, _DISPLAY)
            if data is not None:
                return data
        return _write_out(first, self._hdrs, self._body)

    def _line_at(self, i: int) -> int:
        """Where header entry ``i`` starts in ``raw`` while no entry is edited (every line as
        received), or -1 when that is not known or some line is not ended by CRLF (a splice
        copies the other lines as they are, where the full serialization ends each by CRLF)."""
        at = self._hdr_at
        if at < 0:
            return -1
        hdrs = self._hdrs
        if self._crlf:
            for j in range(i):
                at += _line_len(hdrs[j]) + 2
            return at
        pos = -1
        j = 0
        for h in hdrs:
            if j == i:
                pos = at
            at += _line_len(h) + 2
            j += 1
        # each line end is one or two bytes: the lengths add up to the header block (which
        # ends two bytes before the body) exactly when every line ends with CRLF
        return pos if at == self._body_at - 2 else -1

    def _raw_spliced(self) -> bytes | None:
        """``raw`` with the header line of ``_cut_len`` bytes at ``_cut_at`` replaced by
        ``_put`` or left out, up to the body, then the body (bytes beyond it are dropped, as
        the full serialization drops them); None when no CRLF ends the line there (the
        offsets of :meth:`_line_at` hold only for lines that each end by CRLF)."""
        at = self._cut_at
        body_at = self._body_at
        raw = self.raw
        end = at + self._cut_len
        if at < 0 or body_at < 0 or end + 2 > body_at or raw[end] != 13 or raw[end + 1] != 10:
            return None
        put = self._put
        if put is None:
            return raw[:at] + raw[end + 2 : body_at] + self._body
        return raw[:at] + put.encode("latin-1") + raw[end:body_at] + self._body

    def copy(self) -> SipMessage:
        """An independent copy (edits on it do not touch this message)."""
        m = SipMessage()
        m.raw = self.raw
        m.is_request = self.is_request
        m.method = self.method
        m._ruri = self._ruri
        m.status = self.status
        m._reason = self._reason
        m.version = self.version
        m._first = self._first
        m._hdrs = list(self._hdrs)  # the entries are shared: an edit replaces an entry
        m._ascii = self._ascii
        m._body = self._body
        m._edited = self._edited
        m._body_edited = self._body_edited
        m._cut_at = self._cut_at
        m._cut_len = self._cut_len
        m._crlf = self._crlf
        m._put = self._put
        m._hdr_at = self._hdr_at
        m._body_at = self._body_at
        m._via1 = self._via1
        m._vias = None
        m._cseq_num = self._cseq_num
        m._cseq_method = self._cseq_method
        m._ftag = self._ftag
        m._ttag = self._ttag
        return m

    def __repr__(self) -> str:
        if self.is_request:
            return f"<SipMessage {self.method} {self.ruri} call-id={self.call_id!r}>"
        return f"<SipMessage {self.status} {self.reason} call-id={self.call_id!r}>"


def _via_branch_py(raw: str) -> str | None:
    """The branch of the first via-parm of the Via value ``raw`` read from the text, when it
    holds exactly one ``branch`` parameter (any case) with a plain value; None when the full
    parser must decide. ``siprouter.sip._scan.via_branch`` does the same in C."""
    cut = cut_first_item(raw)  # None for a quote or '<' anywhere
    if cut is None:
        return None
    first = cut[0]
    low = first.lower()
    p = low.find(";branch=")
    if p >= 0 and low.find(";branch=", p + 8) < 0:
        k = p + 8
        e = _value_end(first, k)
        if e > k:
            return first[k:e]
    return None


def _cseq_py(v: str) -> tuple[int, str]:
    """A CSeq value read: (number, method); ValueError when it is not two words, the first
    1 to 10 ASCII digits below 2**31. ``siprouter.sip._scan.cseq`` reads the same in C."""
    parts = v.split()
    if (len(parts) != 2 or not parts[0].isdigit() or not is_ascii(parts[0])
            or len(parts[0]) > 10):
        raise ValueError(f"invalid CSeq: {v!r}")
    num = _digits_value(parts[0])
    if num >= 2**31:
        raise ValueError(f"CSeq number out of range: {v!r}")
    return num, parts[1]


def _digits_value(s: str) -> int:
    """``int(s)`` for a non-empty run of at most 18 ASCII digits, which the caller checked:
    compiled, a loop over the characters costs a fraction of int()'s general parse."""
    n = 0
    for i in range(len(s)):
        n = n * 10 + (ord(s[i]) - 48)
    return n


def _write_out(first: str, hdrs: list[list[str | None]], body: bytes) -> bytes:
    """A message written out: the start line, each header line (:func:`_line_of`), each
    ended by CRLF, an empty line and the body. ``siprouter.sip._scan.serialize`` does the same
    in C."""
    parts = [first]
    for h in hdrs:
        parts.append(_line_of(h))
    parts.append("\r\n")
    return "\r\n".join(parts).encode("latin-1") + body


def _line_len(h: list[str | None]) -> int:
    """The length of ``_line_of(h)``, without writing the line."""
    line = h[2]
    if line is not None:
        return len(line)
    c = h[0]
    v = h[1]
    assert c is not None and v is not None
    return len(h[3] or _DISPLAY.get(c) or display_name(c)) + 2 + len(v)


def _line_of(h: list[str | None]) -> str:
    """Header entry ``h`` as to_bytes() writes it, without its line end: the line as received
    (name spelling, compact form, folding), or written again once edited."""
    line = h[2]  # None once edited
    return _written_line(h) if line is None else line


def _written_line(h: list[str | None]) -> str:
    """The header line of an edited entry, as to_bytes() writes it."""
    c = h[0]
    assert c is not None
    return f"{h[3] or _DISPLAY.get(c) or display_name(c)}: {h[1]}"


def _value_end(text: str, k: int) -> int:
    """Where a parameter value starting at ``k`` ends: the first of "; \t," or the end."""
    e = len(text)
    f = text.find(";", k, e)
    if f >= 0:
        e = f
    f = text.find(",", k, e)
    if f >= 0:
        e = f
    f = text.find(" ", k, e)
    if f >= 0:
        e = f
    f = text.find("\t", k, e)
    if f >= 0:
        e = f
    return e


def _tag_of(value: str | None) -> str | None:
    """The ``tag`` parameter of a From/To value (header parameters only, not URI ones)."""
    if value is None:
        return None
    if _c_tag_of is not None:
        t = _c_tag_of(value)
        if t != "":  # "": not a form the C reader takes
            return t
    return _tag_of_py(value)


def _tag_of_py(value: str) -> str | None:
    """What :func:`_tag_of` gives; ``siprouter.sip._scan.tag_of`` reads the common forms the
    same way in C, when it is built."""
    gt = value.rfind(">")
    tail = value[gt + 1 :] if gt >= 0 else value
    p = tail.find(";tag=")
    if p >= 0 and tail.find("t", 0, p) < 0 and tail.find("T", 0, p) < 0:
        # the common form, and no earlier parameter name that could be "tag" in another case
        k = p + 5
        e = _value_end(tail, k)
        if e > k:
            return tail[k:e]
    return _tag_scan(tail)


def _tag_scan(tail: str) -> str | None:
    """The general case of :func:`_tag_of`: ``tail`` is the value after its last ">"."""
    low = tail.lower()
    i = low.find("tag")
    while i >= 0:
        # must be a parameter name: preceded by ';' (LWS allowed) and followed by '='
        j = i - 1
        while j >= 0 and low[j] in " \t":
            j -= 1
        k = i + 3
        while k < len(low) and low[k] in " \t":
            k += 1
        if j >= 0 and low[j] == ";" and k < len(low) and low[k] == "=":
            k += 1
            while k < len(low) and low[k] in " \t":
                k += 1
            return tail[k : _value_end(tail, k)] or None
        i = low.find("tag", i + 3)
    return None


# Whitespace trimmed around a header value in wire form: ASCII only, as str.strip() would also
# take U+0085 and U+00A0, which in wire form are the last bytes of UTF-8 characters ("à" ends in
# 0xA0)
_WIRE_WS: Final = " \t\r\n\x0b\x0c\x1c\x1d\x1e\x1f"
# written name -> (canonical name, name as written without trailing LWS); valid tokens only
_parse_entries: Final[dict[str, tuple[str, str]]] = {}


def _index_block(text: str, start: int = 0, end: int = -1) -> list[list[str | None]]:
    """The header entries of a header section: ``text[start:end]`` (end -1: to the end of the
    text) holds the lines after the start line."""
    if end < 0:
        end = len(text)
    if _c_index_headers is not None:
        hl = _c_index_headers(text, _parse_entries, start, end)
        if hl is not None:
            return hl
    block = text if start == 0 and end == len(text) else text[start:end]
    hdrs: list[list[str | None]] = []
    if not _fast_headers(hdrs, block):
        hdrs = []
        _slow_headers(hdrs, block)
    return hdrs


def _fast_headers(hdrs: list[list[str | None]], block: str) -> bool:
    """The common case: CRLF lines, no folding, header names seen before (what
    ``siprouter.sip._scan.index_headers`` does in C, when it is built).

    Returns False (and the caller starts over with :func:`_slow_headers`, which also gives
    the errors) when any line does not fit: a folded line, a bare LF, a new or bad name.
    Plain ``str`` methods (no regex): ``split``/``count``/``find`` scan in C at memchr speed.
    """
    lines = block.split("\r\n")
    n = len(lines) - 1
    # every LF ends a CRLF line (a bare CR inside a line stays in its value, as on the slow
    # path)
    if lines[n] or block.count("\n") != n:
        return False
    entries = _parse_entries
    for i in range(n):
        line = lines[i]
        colon = line.find(":")
        if colon <= 0:
            return False
        ent = entries.get(line[:colon])
        if ent is None:  # a new name (checked by the slow path), or a folded line
            return False
        value = line[colon + 1 :].strip(_WIRE_WS)
        written = ent[1]
        if colon == len(written) and len(value) == len(line) - colon - 2 and line[colon + 1] == " ":
            # "Name: value", what the serializer writes from the written name and the value
            hdrs.append([ent[0], value, None, written])
        else:
            hdrs.append([ent[0], value, line, written])
    return True


def _slow_headers(hdrs: list[list[str | None]], block: str) -> None:
    """Every header line, one at a time: folding, bare LF line ends, new names, errors."""
    lines = block.split("\n")
    lines.pop()  # the part after the last line end is empty
    entries = _parse_entries
    cur: list[str | None] | None = None
    cur_lines: list[str] | None = None
    for line in lines:
        if line.endswith("\r"):
            line = line[:-1]
        raw_line = line  # stored without its line end; a bare LF leaves as CRLF
        if not line:
            raise ParseError(400, "empty line inside header section")
        c0 = line[0]
        if c0 == " " or c0 == "\t":
            # folded continuation of the previous header line (RFC 3261 §7.3.1)
            if cur is None or cur_lines is None:
                raise ParseError(400, "continuation line before the first header")
            cur[1] = f"{cur[1]} {line.strip(_WIRE_WS)}".strip(_WIRE_WS)
            cur_lines.append(raw_line)
            cur[2] = "\r\n".join(cur_lines)
            continue
        colon = line.find(":")
        if colon <= 0:
            raise ParseError(400, f"malformed header line: {line[:40]!r}")
        name = line[:colon]
        ent = entries.get(name)
        if ent is None:
            stripped = name.rstrip(" \t")
            if not stripped or any(ch not in _TOKEN_CHARS for ch in stripped):
                raise ParseError(400, f"invalid header name: {name[:40]!r}")
            ent = (canonical_name(stripped), stripped)
            if len(entries) < 4096:
                entries[name] = ent
        cur = [ent[0], line[colon + 1 :].strip(_WIRE_WS), raw_line, ent[1]]
        cur_lines = [raw_line]
        hdrs.append(cur)


def _index_headers(raw: bytes) -> list[list[str | None]]:
    """The header entries of bytes that parsed before (see ``SipMessage.compact``)."""
    end = raw.find(b"\r\n\r\n")
    head_end = end + 2 if end >= 0 else raw.find(b"\n\n") + 1
    head = raw[:head_end].decode("latin-1")
    return _index_block(head, head.find("\n") + 1)


def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one SIP message from ``data``.

    For a datagram (``stream=False``) a missing Content-Length means the body runs to the end of
    the datagram, and bytes beyond Content-Length are discarded (RFC 3261 §18.3). For a stream
    the framer has already cut the message at Content-Length.
    """
    if not data:
        raise ParseError(0, "empty message")
    # Leading CRLFs before the start line are ignored (RFC 3261 §7.5).
    start = 0
    n = len(data)
    while start < n and data[start] in (13, 10):
        start += 1
    if start >= n:
        raise ParseError(0, "keep-alive only")
    # one code point per byte, so offsets in ``text`` are offsets in ``data`` (str.find is a
    # native call in the compiled build, bytes.find a generic method call)
    text = data.decode("latin-1")
    if _c_head is not None:
        got = _c_head(text, start, _parse_entries)
        if got is not None:
            first, method, target, status, hdrs, hdr_at, body_at, cl, ascii = got
            msg = SipMessage()
            if status:
                msg.is_request = False
                msg.status = status
                msg._reason = target
            else:
                msg.method = method
                msg._ruri = target
            msg._first = first
            msg._hl = hdrs
            msg._ascii = ascii
            msg._hdr_at = hdr_at - start
            msg._body_at = body_at - start
            msg._crlf = True
            return _with_body(msg, data, start, body_at, cl, stream)
    return _parse_message_py(data, text, start, stream)


def _parse_message_py(data: bytes, text: str, start: int, stream: bool) -> SipMessage:
    """:func:`parse_message` after the leading CRLFs (``text`` is ``data`` decoded as
    latin-1), in Python: every form, and the errors (``siprouter.sip._scan.head`` reads the
    common form in C, when it is built)."""
    end = text.find("\r\n\r\n", start)
    if end >= 0:
        head_end, body_start = end + 2, end + 4
    else:
        end = text.find("\n\n", start)
        if end < 0:
            raise ParseError(400, "no end of header section")
        head_end, body_start = end + 1, end + 2
    # the header section, text[start:head_end], each line with its own line end (read in
    # place: the start line and the header lines are cut from text itself)
    msg = SipMessage()
    fl_end = text.find("\n", start, head_end)
    first = text[start:fl_end].removesuffix("\r")
    _parse_first_line(msg, first)
    hdrs = msg._hdrs = _index_block(text, fl_end + 1, head_end)
    msg._ascii = is_ascii(text) or is_ascii(text[fl_end + 1 : head_end])
    if head_end == end + 2:  # CRLF CRLF ends the header section: offsets in raw
        msg._hdr_at = fl_end + 1 - start
        msg._body_at = body_start - start

    # Content-Length
    cl_values = [h[1] for h in hdrs if h[0] == "content-length"]
    cl = -1
    if cl_values:
        if len(cl_values) > 1 and len(set(cl_values)) > 1:
            raise ParseError(400, "conflicting Content-Length headers")
        clv = cl_values[0]
        assert clv is not None
        if not clv.isdigit() or not is_ascii(clv):
            raise ParseError(400, f"invalid Content-Length: {clv[:20]!r}")
        if len(clv) > _MAX_CL_DIGITS:
            raise ParseError(400, "Content-Length out of range")
        cl = _digits_value(clv)
    return _with_body(msg, data, start, body_start, cl, stream)


def _with_body(msg: SipMessage, data: bytes, start: int, body_start: int, cl: int,
               stream: bool) -> SipMessage:
    """``msg`` given its body, ``data[body_start:]`` cut at the Content-Length ``cl`` (-1:
    none), and its raw bytes (from ``start``)."""
    rest = data[body_start:]
    if cl >= 0:
        if cl > len(rest):
            raise ParseError(400, "Content-Length larger than the message body")
        if cl < len(rest):
            # RFC 3261 §18.3: extra bytes past Content-Length in a datagram are discarded.
            rest = rest[:cl]
            data = data[: body_start + cl]
    elif stream:
        raise ParseError(400, "Content-Length is mandatory on a stream transport")
    msg._body = rest
    msg.raw = data if start == 0 else data[start:]
    return msg


# the method names of RFC 3261 and its extensions, each as one str the parser hands out (in the
# start line, and in the CSeq through siprouter.sip._scan.cseq)
_METHOD_NAMES: Final[dict[str, str]] = {
    m: m
    for m in ("INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "PRACK", "UPDATE",
              "INFO", "MESSAGE", "SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH")
}


def _parse_first_line(msg: SipMessage, first: str) -> None:
    if first.startswith("SIP/") or first[:4].upper() == "SIP/":
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (the version in any case,
        # RFC 3261 §7.1; a method, a token, has no "/")
        parts = first.split(" ", 2)
        if len(parts) < 2:
            raise ParseError(0, "malformed status line")
        ver, code = parts[0], parts[1]
        if ver != _SIP20 and ver.upper() != _SIP20:
            raise ParseError(0, f"unsupported SIP version in response: {ver[:20]!r}")
        if len(code) != 3 or not code.isdigit() or not is_ascii(code) or code[0] == "0":
            raise ParseError(0, f"invalid status code: {code[:20]!r}")
        msg.is_request = False
        msg.status = _digits_value(code)
        msg._reason = parts[2] if len(parts) > 2 else ""
        msg.version = _SIP20
        msg._first = first
        return
    # Request-Line = Method SP Request-URI SP SIP-Version  (exactly single SPs, RFC 3261 §25.1)
    parts = first.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        if first[:1] in (" ", "\t") or "  " in first or first.endswith(" "):
            raise ParseError(400, "malformed Request-Line: extra whitespace")
        raise ParseError(400, "malformed Request-Line")
    method, ruri, ver = parts
    known = _METHOD_NAMES.get(method)
    if known is not None:
        method = known  # one shared str per method name
    elif any(ch not in _TOKEN_CHARS for ch in method):
        raise ParseError(400, f"invalid method token: {method[:20]!r}")
    if ver != _SIP20:
        up = ver.upper()
        if not up.startswith("SIP/"):
            raise ParseError(400, f"not a SIP request: {ver[:20]!r}")
        if up != _SIP20:
            raise ParseError(505, "Version Not Supported")
    if ruri[0] == "<":
        raise ParseError(400, "Request-URI enclosed in <>")
    msg.is_request = True
    msg.method = method
    msg._ruri = ruri
    msg.version = _SIP20
    msg._first = first
