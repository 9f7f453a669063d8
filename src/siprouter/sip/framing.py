"""Stream framing: cut a TCP/TLS byte stream into whole SIP messages (sans-IO).

Theory of operation
-------------------
RFC 3261 §18.3: on a stream transport the end of the header section is the first empty line and
the body is exactly Content-Length bytes long, so Content-Length (or its compact form ``l``) is
mandatory. :class:`StreamFramer` buffers what :meth:`StreamFramer.feed` receives and returns the
bytes of every message completed so far; a partial message stays buffered.

* Between messages a peer may send CRLFs. RFC 3261 §7.5 says to ignore them; RFC 5626 §3.5.1
  makes a double CRLF (``"\\r\\n\\r\\n"``) a keep-alive *ping* that is answered with a single CRLF
  *pong*. ``pings`` tells how many pings the last ``feed`` call saw, so the transport can answer
  each with ``b"\\r\\n"``. A lone CRLF (a pong, when we are the client) is skipped silently.
* The header section ends at the first ``CRLF CRLF``; a bare ``LF LF`` is accepted as well, as the
  message parser accepts it.
* Limits: a header section or a whole message longer than ``max_message_size`` raises
  ``ParseError(513, ...)`` (RFC 3261 §21.5.14 "Message Too Large"); a missing, malformed or
  conflicting Content-Length raises ``ParseError(400, ...)``. After an error the stream has lost
  its framing, so every later ``feed`` raises the same error: close the connection.
* Work stays linear in the bytes received, even fed one byte at a time: the header-end search
  resumes where the previous one stopped (``_scan``), and once the headers are known the framer
  waits for ``_need`` bytes without searching again.
* When an error is found after some messages of the same ``feed`` call were complete, those
  messages are returned and the error is kept in ``pending_error``; the next ``feed`` raises it.
  The transport checks ``pending_error`` after delivering the messages.
"""

from __future__ import annotations

import re

from .message import ParseError

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "StreamFramer"]

# Kamailio's BUF_SIZE: the largest SIP message it accepts.
DEFAULT_MAX_MESSAGE_SIZE = 65535

# A Content-Length header line inside a header section (full or compact form, RFC 3261 §7.3.3,
# §20.14). Anchored on the line end before it, so the start line never matches.
_CONTENT_LENGTH = re.compile(
    # spelled with character classes: re.IGNORECASE makes this search 2.5x slower
    rb"\n(?:[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]|[Ll])[ \t]*:[ \t]*([^\r\n]*)"
)
# Content-Length values longer than this cannot fit any allowed message size.
_MAX_CL_DIGITS = 10


class StreamFramer:
    """Incremental SIP stream framer. ``feed(bytes) -> list[bytes]`` of complete messages."""

    __slots__ = (
        "_buf",
        "_crlf_run",
        "_need",
        "_scan",
        "consumed",
        "max_message_size",
        "pending_error",
        "pings",
    )

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size <= 0:
            raise ValueError("max_message_size must be positive")
        self.max_message_size = max_message_size
        #: total bytes consumed so far (messages and keep-alives)
        self.consumed = 0
        #: double-CRLF keep-alive pings seen during the last ``feed`` call
        self.pings = 0
        #: an error found after some messages of the last ``feed`` call were returned
        self.pending_error: ParseError | None = None
        self._buf = bytearray()
        self._scan = 0  # where the next header-end search starts (offset into _buf)
        self._need = -1  # total length of the message at the head of _buf, once known
        self._crlf_run = 0  # CRLFs seen in a row between messages (2 = one ping)

    def head(self, limit: int) -> bytes:
        """The first ``limit`` bytes still buffered (the message that failed, after an error)."""
        return bytes(self._buf[:limit])

    @property
    def buffered(self) -> int:
        """Bytes held for a message not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """Add ``data``; return each SIP message completed by it (may be empty).

        Raises :class:`~siprouter.sip.message.ParseError` when the stream cannot be framed.
        """
        if self.pending_error is not None:
            raise self.pending_error
        self.pings = 0
        buf: bytes | bytearray
        raw: bytes | None = None
        if not self._buf and type(data) is bytes:
            # fast path: nothing buffered, work on the received bytes themselves; a segment
            # holding exactly one message is returned without any copy
            buf = raw = data
        else:
            buf = self._buf
            buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        try:
            while pos < end:
                if self._need < 0:
                    if self._scan == 0:
                        # between messages: skip CRLF keep-alives (RFC 5626 §3.5.1, RFC 3261 §7.5)
                        c = buf[pos]
                        if c == 13:
                            if pos + 1 >= end:
                                break  # lone CR: wait for its LF
                            if buf[pos + 1] == 10:
                                pos += 2
                                self._crlf_run += 1
                                if self._crlf_run == 2:
                                    self.pings += 1
                                    self._crlf_run = 0
                                continue
                        elif c == 10:
                            pos += 1
                            continue
                        self._crlf_run = 0
                    need = self._find_headers(buf, pos, end)
                    if need < 0:
                        break
                    self._need = need
                if end - pos < self._need:
                    break
                stop = pos + self._need
                if raw is None:
                    out.append(bytes(buf[pos:stop]))
                elif pos == 0 and stop == end:
                    out.append(raw)  # said outright: a mypyc-compiled slice always copies
                else:
                    out.append(raw[pos:stop])
                pos = stop
                self._need = -1
                self._scan = 0
        except ParseError as exc:
            # the stream cannot be resynchronised: keep the error for every later call
            self.pending_error = exc
            self._consume(buf, pos, end)
            if out:
                return out
            raise
        self._consume(buf, pos, end)
        return out

    def _consume(self, buf: bytes | bytearray, pos: int, end: int) -> None:
        """Drop ``pos`` consumed bytes; keep the rest buffered."""
        self.consumed += pos
        if buf is self._buf:
            if pos:
                del self._buf[:pos]
        elif pos < end:
            self._buf = bytearray(memoryview(buf)[pos:])

    def _find_headers(self, buf: bytes | bytearray, pos: int, end: int) -> int:
        """Length of the message starting at ``pos`` once its header section is complete, else -1.

        ``self._scan`` is relative to ``pos`` and remembers how far the search got.
        """
        scan_from = pos + self._scan
        crlf = buf.find(b"\r\n\r\n", scan_from)
        lflf = buf.find(b"\n\n", scan_from, crlf + 2 if crlf >= 0 else end)
        if lflf >= 0:
            head_end, body_start = lflf + 1, lflf + 2
        elif crlf >= 0:
            head_end, body_start = crlf + 2, crlf + 4
        else:
            if end - pos > self.max_message_size:
                raise ParseError(513, "header section too large")
            # resume 3 bytes back: the terminator may straddle this feed and the next
            self._scan = max(0, end - pos - 3)
            return -1
        head_len = body_start - pos
        if head_len > self.max_message_size:
            raise ParseError(513, "header section too large")
        length = -1
        for m in _CONTENT_LENGTH.finditer(buf, pos, head_end):
            value = m.group(1).strip()
            if not value.isdigit() or len(value) > _MAX_CL_DIGITS:
                raise ParseError(400, "invalid Content-Length")
            n = int(value)
            if length >= 0 and n != length:
                raise ParseError(400, "conflicting Content-Length headers")
            length = n
        if length < 0:
            raise ParseError(400, "Content-Length is mandatory on a stream transport")
        total = head_len + length
        if total > self.max_message_size:
            # RFC 3261 §21.4.11: the request entity is larger than we are willing to process
            raise ParseError(413, "Request Entity Too Large")
        return total
