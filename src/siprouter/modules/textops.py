"""Text operations on the message (Kamailio ``textops``): ``KSR.textops``.

``search``/``subst`` work on the message as it would leave now (start line, headers, body);
a ``subst`` that changes it re-parses the edited text, and refuses (-1) an edit that would
leave an unparseable message.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..sip.message import ParseError, parse_message
from .corex_kemi import add_header_lines
from .exports import INT, STR, Export, declare

__all__: list[str] = []

log = logging.getLogger("siprouter.textops")

_CACHE: dict[str, re.Pattern[str]] = {}


def _re(text: str, flags: int = 0) -> re.Pattern[str] | None:
    key = f"{flags}:{text}"
    p = _CACHE.get(key)
    if p is None:
        try:
            p = re.compile(text, flags)
        except re.error as e:
            log.error("bad regular expression %r: %s", text, e)
            return None
        if len(_CACHE) < 1024:
            _CACHE[key] = p
    return p


def _text(msg: Any) -> str:
    return str(msg.msg.to_bytes().decode("utf-8", "surrogateescape"))


def _search(msg: Any, regex: str) -> int:
    p = _re(str(regex))
    return 1 if p is not None and p.search(_text(msg)) else -1


def _search_body(msg: Any, regex: str) -> int:
    p = _re(str(regex))
    body = msg.msg.body.decode("utf-8", "surrogateescape")
    return 1 if p is not None and p.search(body) else -1


def _parse_subst(expr: str) -> tuple[re.Pattern[str], str, int] | None:
    """'/re/replacement/flags' (any delimiter; flags g, i) -> (pattern, repl, count)."""
    e = str(expr)
    if len(e) < 4:
        return None
    d = e[0]
    parts: list[str] = []
    cur = ""
    i = 1
    while i < len(e):
        c = e[i]
        if c == "\\" and i + 1 < len(e) and e[i + 1] == d:
            cur += d
            i += 2
            continue
        if c == d:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    if len(parts) != 3:
        return None
    flags = parts[2]
    # Kamailio (core/re.c) compiles with REG_NEWLINE: ^ and $ match at every line and . stops
    # at a newline; flag "s" drops REG_NEWLINE
    cflags = re.DOTALL if "s" in flags else re.MULTILINE
    p = _re(parts[0], cflags | (re.IGNORECASE if "i" in flags else 0))
    if p is None:
        return None
    repl = re.sub(r"\\(\d)", r"\\g<\1>", parts[1])
    return p, repl, 0 if "g" in flags else 1


def _apply(msg: Any, text: str) -> int:
    try:
        new = parse_message(text.encode("utf-8", "surrogateescape"))
    except ParseError as e:
        log.error("subst: the edited message does not parse: %s", e.reason)
        return -1
    msg.msg = new
    return 1


def _subst(msg: Any, expr: str) -> int:
    s = _parse_subst(expr)
    if s is None:
        log.error("subst: bad expression %r", expr)
        return -1
    p, repl, count = s
    text = _text(msg)
    head, sep, body = text.partition("\r\n\r\n")
    new, n = p.subn(repl, head, count=count)
    if not n:
        return -1
    return _apply(msg, new + sep + body)


def _subst_uri(msg: Any, expr: str) -> int:
    s = _parse_subst(expr)
    if s is None or not msg.is_request:
        return -1
    p, repl, count = s
    new, n = p.subn(repl, msg.msg.ruri, count=count)
    if not n:
        return -1
    try:
        msg.msg.ruri = new
    except ValueError:
        return -1
    return 1


def _subst_user(msg: Any, expr: str) -> int:
    from ..sip.uri import parse_uri

    s = _parse_subst(expr)
    if s is None or not msg.is_request:
        return -1
    p, repl, count = s
    try:
        u = parse_uri(msg.msg.ruri).copy()  # shared when parsed: changed below
    except ValueError:
        return -1
    new, n = p.subn(repl, u.user or "", count=count)
    if not n:
        return -1
    u.user = new or None
    msg.msg.ruri = str(u)
    return 1


def _subst_body(msg: Any, expr: str) -> int:
    s = _parse_subst(expr)
    if s is None:
        return -1
    p, repl, count = s
    body = msg.msg.body.decode("utf-8", "surrogateescape")
    new, n = p.subn(repl, body, count=count)
    if not n:
        return -1
    msg.msg.body = new.encode("utf-8", "surrogateescape")
    return 1


def _append_hf(msg: Any, text: str) -> int:
    return add_header_lines(msg, text, first=False, what="append_hf")


def _insert_hf(msg: Any, text: str) -> int:
    return add_header_lines(msg, text, first=True, what="insert_hf")


def _remove_hf(msg: Any, name: str) -> int:
    n: int = msg.msg.remove(str(name))
    return n if n > 0 else -1


def _remove_hf_re(msg: Any, regex: str) -> int:
    p = _re(str(regex), re.IGNORECASE)
    if p is None:
        return -1
    removed = 0
    for name in dict.fromkeys(n for n, _ in msg.msg.headers()):
        if p.fullmatch(name):
            removed += msg.msg.remove(name)
    return removed if removed > 0 else -1


def _is_present_hf(msg: Any, name: str) -> int:
    return 1 if msg.msg.has(str(name)) else -1


def _is_present_hf_re(msg: Any, regex: str) -> int:
    p = _re(str(regex), re.IGNORECASE)
    if p is None:
        return -1
    return 1 if any(p.fullmatch(n) for n, _ in msg.msg.headers()) else -1


def _has_body(msg: Any) -> int:
    return 1 if msg.msg.body else -1


def _has_body_type(msg: Any, ctype: str) -> int:
    if not msg.msg.body:
        return -1
    ct = (msg.msg.get("content-type") or "").split(";")[0].strip().lower()
    return 1 if ct == str(ctype).strip().lower() else -1


def _set_body(msg: Any, body: str, ctype: str) -> int:
    msg.msg.body = str(body).encode()
    if ctype:
        msg.msg.set("Content-Type", str(ctype))
    return 1


def _cmp_str(msg: Any, a: str, b: str) -> int:
    return 1 if str(a) == str(b) else -1


def _cmp_istr(msg: Any, a: str, b: str) -> int:
    return 1 if str(a).lower() == str(b).lower() else -1


def _starts_with(msg: Any, a: str, b: str) -> int:
    return 1 if str(a).startswith(str(b)) else -1


def _ends_with(msg: Any, a: str, b: str) -> int:
    return 1 if str(a).endswith(str(b)) else -1


declare("textops", (
    Export("search", _search, (STR,), INT, "1 if the regex matches the message text."),
    Export("search_body", _search_body, (STR,), INT, "1 if the regex matches the body."),
    Export("subst", _subst, (STR,), INT,
           "'/re/repl/flags' (g: all, i: ignore case) over the start line and headers."),
    Export("subst_uri", _subst_uri, (STR,), INT, "subst over the Request-URI."),
    Export("subst_user", _subst_user, (STR,), INT, "subst over the Request-URI user."),
    Export("subst_body", _subst_body, (STR,), INT, "subst over the body."),
    Export("append_hf", _append_hf, (STR,), INT, 'Append "Name: value\\r\\n" header line(s).'),
    Export("insert_hf", _insert_hf, (STR,), INT, "Insert header line(s) before all headers."),
    Export("remove_hf", _remove_hf, (STR,), INT,
           "Remove every header of that name: how many were removed, -1 if none."),
    Export("remove_hf_re", _remove_hf_re, (STR,), INT,
           "Remove headers whose name matches the regex."),
    Export("is_present_hf", _is_present_hf, (STR,), INT, "1 if the header exists."),
    Export("is_present_hf_re", _is_present_hf_re, (STR,), INT,
           "1 if a header name matches the regex."),
    Export("has_body", _has_body, (), INT, "1 if the message has a body."),
    Export("has_body_type", _has_body_type, (STR,), INT,
           "1 if it has a body of that Content-Type."),
    Export("set_body", _set_body, (STR, STR), INT, "Replace the body and its Content-Type."),
    Export("cmp_str", _cmp_str, (STR, STR), INT, "1 if the strings are equal."),
    Export("cmp_istr", _cmp_istr, (STR, STR), INT, "1 if equal ignoring case."),
    Export("starts_with", _starts_with, (STR, STR), INT, "1 if a starts with b."),
    Export("ends_with", _ends_with, (STR, STR), INT, "1 if a ends with b."),
), doc="Text operations on the message (Kamailio textops).")
