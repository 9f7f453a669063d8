"""Building messages the server originates: responses (RFC 3261 §8.2.6) and their tags.

Responses are built straight into bytes: a reply is sent once (and kept by its transaction for
retransmission), so there is no reason to pay for a message object.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Final

from .message import SipMessage, _to_wire, canonical_name, display_name

__all__ = ["REASONS", "make_response", "make_response_from_raw", "new_tag", "random_bytes"]

# RFC 3261 §21 and the IANA registry: default reason phrases.
REASONS: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_COPIED: Final = ("via", "from", "to", "call-id", "cseq")
_COPIED_SET: Final = frozenset(_COPIED)
_COPIED_100: Final = frozenset((*_COPIED, "timestamp"))


class _RandomPool:
    """Bytes from the kernel's random source (``os.urandom``) drawn 4 KiB at a time and handed
    out a few at a time: a tag per reply would otherwise cost a getrandom() system call. A
    forked child (a worker) starts with an empty pool, so no two processes hand out the same
    bytes."""

    __slots__ = ("buf", "pos")

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0

    def take(self, n: int) -> bytes:
        pos = self.pos
        end = pos + n
        if end > len(self.buf):
            self.buf = os.urandom(max(4096, n))
            pos = 0
            end = n
        self.pos = end
        return self.buf[pos:end]

    def reset(self) -> None:
        self.buf = b""
        self.pos = 0


_POOL: Final = _RandomPool()
os.register_at_fork(after_in_child=_POOL.reset)


def random_bytes(n: int) -> bytes:
    """``n`` bytes of ``os.urandom``, from a pool (see :class:`_RandomPool`); each handed out
    once."""
    return _POOL.take(n)


def new_tag() -> str:
    """A fresh To/From tag (RFC 3261 §19.3: globally unique and cryptographically random, at
    least 32 bits of randomness: 48 bits of the kernel's random source)."""
    return _POOL.take(6).hex()


def _clean(text: str) -> str:
    """Caller text for a header line: no CR/LF, in the wire form of ``SipMessage`` values."""
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return _to_wire(text)


def make_response(
    request: SipMessage,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    server: str | None = None,
) -> bytes:
    """A response to ``request`` per RFC 3261 §8.2.6.

    Via (every line), From, To, Call-ID and CSeq are copied; the To gets ``to_tag`` when it has
    no tag yet and the status is not 100; a 100 copies Timestamp (§8.2.6.1).
    """
    if reason is None:
        reason = REASONS.get(status, "Unknown")
    first = f"SIP/2.0 {status} {_clean(reason)}"
    names = _COPIED_100 if status == 100 else _COPIED_SET
    # the lines as the request has them, but the To written again with the tag when one is added
    tag = to_tag if to_tag and status != 100 and request.to_tag is None else None
    tail = _tail(headers, body, server)
    data = request.response_bytes(first, names, tag, tail, body)
    return _response_py(request, first, names, tag, tail, body) if data is None else data


def _response_py(request: SipMessage, first: str, names: frozenset[str], to_tag: str | None,
                 tail: str, body: bytes) -> bytes:
    """What ``SipMessage.response_bytes`` writes in C: the status line, the request's lines
    named in ``names`` (each "to" one as ``To: value;tag=to_tag`` when ``to_tag`` is given),
    ``tail`` and ``body``."""
    out = [first, "\r\n"]
    if to_tag is None:
        lines = request.wire_lines_of(names)
        if lines:
            out.append("\r\n".join(lines))
            out.append("\r\n")
    else:
        for c, value, line in request.wire_named_lines_of(names):
            if c == "to":
                out.append(f"To: {value};tag={to_tag}\r\n")
            else:
                out.append(line)
                out.append("\r\n")
    out.append(tail)
    # header_items() gives the wire form (one code point per byte); new text is UTF-8
    data = "".join(out).encode("latin-1")
    return data + body if body else data


def _tail(headers: Iterable[tuple[str, str]], body: bytes, server: str | None) -> str:
    """The rest of a response's header section after the copied lines: extra headers, Server,
    Content-Length and the empty line."""
    out: list[str] = []
    for name, value in headers:
        out.append(f"{name}: {_clean(value)}\r\n")
    if server:
        line = _SERVER_LINES.get(server)
        if line is None:
            line = f"Server: {_clean(server)}\r\n"
            if len(_SERVER_LINES) < 16:
                _SERVER_LINES[server] = line
        out.append(line)
    out.append(f"Content-Length: {len(body)}\r\n\r\n" if body else "Content-Length: 0\r\n\r\n")
    return "".join(out)


# the Server line of each server name given (one per process, in practice)
_SERVER_LINES: Final[dict[str, str]] = {}


_LINE_RE = re.compile(rb"^([A-Za-z-]+)[ \t]*:[ \t]*(.*?)\r?$", re.MULTILINE)


def make_response_from_raw(data: bytes, status: int, reason: str | None = None) -> bytes | None:
    """Best-effort error response to bytes that did not parse as a message.

    Picks the Via, From, To, Call-ID and CSeq lines out of the raw text so the sender can match
    the answer; returns None when the bytes are not a request or lack what a response needs.
    """
    head_end = data.find(b"\r\n\r\n")
    head = data if head_end < 0 else data[:head_end]
    first_end = head.find(b"\n")
    if first_end < 0 or head.startswith(b"SIP/"):
        return None
    found: dict[str, list[str]] = {}
    for m in _LINE_RE.finditer(head, first_end + 1):
        c = canonical_name(m.group(1).decode("latin-1"))
        if c in _COPIED:
            found.setdefault(c, []).append(m.group(2).decode("utf-8", "replace"))
    if "via" not in found or "call-id" not in found or "cseq" not in found:
        return None
    if reason is None:
        reason = REASONS.get(status, "Bad Request")
    out = [f"SIP/2.0 {status} {_clean(reason)}\r\n"]
    for c in _COPIED:
        for value in found.get(c, ()):
            out.append(f"{display_name(c)}: {_clean(value)}\r\n")
    out.append("Content-Length: 0\r\n\r\n")
    return "".join(out).encode("utf-8")
