"""Kamailio core exports: the functions directly on ``KSR``, ``KSR.hdr`` and ``KSR.kx``.

Return types follow Kamailio's core export table (``src/core/kemi.c``): the ``is_*`` checks and
flag / URI setters are booleans, ``forward`` and the ``hdr`` functions return 1 / -1.
Defines for ``KSR.kx.ifdef`` come from the configuration (``[server] defines``) and the command
line (``--define``, Kamailio's ``-A``) through :func:`set_defines`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..sip.headers import parse_name_addr
from ..sip.uri import parse_uri
from .exports import BOOL, INT, NONE, STR, XVAL, Export, declare
from .pv import _hdr_uri, _na, _rcv_ip, _rcv_port, _ruri, _src_ip, _src_port

__all__ = ["defines", "set_defines"]

log = logging.getLogger("siprouter.script")

_DEFINES: dict[str, str] = {}


def set_defines(items: list[str] | tuple[str, ...] | dict[str, str]) -> None:
    """Replace the defines ("NAME" or "NAME=VALUE" strings, or a mapping)."""
    _DEFINES.clear()
    if isinstance(items, dict):
        _DEFINES.update(items)
        return
    for it in items:
        name, _, value = str(it).partition("=")
        _DEFINES[name.strip()] = value.strip()


def defines() -> dict[str, str]:
    return dict(_DEFINES)


# -- logging ------------------------------------------------------------------------------------
def _logger(level: int) -> Any:
    def fn(msg: Any, text: str) -> None:
        if log.isEnabledFor(level):
            log.log(level, "%s", str(text).rstrip("\n"))

    return fn


_LEVELS = {"dbg": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "notice": logging.INFO, "warn": logging.WARNING, "err": logging.ERROR,
           "crit": logging.CRITICAL, "alert": logging.CRITICAL}


def _log(msg: Any, level: str, text: str) -> None:
    log.log(_LEVELS.get(str(level).lower(), logging.INFO), "%s", str(text).rstrip("\n"))


# -- checks -------------------------------------------------------------------------------------
def _method_is(method: str) -> Any:
    def fn(msg: Any) -> bool:
        return bool(msg.is_request and msg.msg.method == method)

    fn.__name__ = f"is_{method}"
    return fn


_METHOD_LETTERS = {
    "i": "INVITE", "a": "ACK", "b": "BYE", "c": "CANCEL", "m": "MESSAGE", "r": "REGISTER",
    "e": "PRACK", "p": "PUBLISH", "s": "SUBSCRIBE", "n": "NOTIFY", "o": "OPTIONS",
    "f": "REFER", "g": "GET", "u": "UPDATE", "k": "KDMQ", "d": "DELETE", "t": "POST", "v": "PUT",
}


def _method_of(msg: Any) -> str:
    return str(msg.msg.method if msg.is_request else msg.msg.cseq_method)


def _is_method(msg: Any, method: str) -> bool:
    return _method_of(msg).upper() == str(method).upper()


def _is_method_in(msg: Any, letters: str) -> bool:
    m = _method_of(msg)
    for ch in str(letters).lower():
        if _METHOD_LETTERS.get(ch) == m:
            return True
    return False


def _proto_is(*protos: str) -> Any:
    def fn(msg: Any) -> bool:
        s = msg.source
        return s is not None and s.proto in protos

    return fn


def _is_proto(msg: Any, spec: str) -> bool:
    s = msg.source
    if s is None:
        return False
    letters = {"e": "udp", "u": "udp", "t": "tcp", "s": "tls", "c": "sctp", "w": "ws", "y": "wss"}
    return any(letters.get(ch) == s.proto for ch in str(spec).lower())


def _core(msg: Any) -> Any:
    return msg.core


def _is_myself(msg: Any, uri: str) -> bool:
    try:
        return bool(msg.core.me.is_myself(uri))
    except ValueError:
        return False


def _myself_of(get_uri: Any) -> Any:
    def fn(msg: Any) -> bool:
        u = get_uri(msg)
        if not u:
            return False
        try:
            return bool(msg.core.me.is_myself(u))
        except ValueError:
            return False

    return fn


def _from_uri(msg: Any) -> str | None:
    n = _na(msg, "from")
    return None if n is None else str(n.uri)


def _to_uri(msg: Any) -> str | None:
    n = _na(msg, "to")
    return None if n is None else str(n.uri)


def _src_uri(msg: Any) -> str | None:
    s = msg.source
    if s is None:
        return None
    host = f"[{s.host}]" if ":" in s.host else s.host
    return f"sip:{host}:{s.port}" + ("" if s.proto == "udp" else f";transport={s.proto}")


def _nh_uri(msg: Any) -> str | None:
    if not msg.is_request:
        return None
    return str(msg.dst_uri or msg.msg.ruri)


def _myself_srcip(msg: Any) -> bool:
    s = msg.source
    return s is not None and bool(msg.core.me.is_myself_host(s.host))


# -- flags --------------------------------------------------------------------------------------
def _setflag(msg: Any, f: int) -> bool:
    if not 0 <= int(f) < 64:
        return False
    msg.flags |= 1 << int(f)
    return True


def _resetflag(msg: Any, f: int) -> bool:
    if not 0 <= int(f) < 64:
        return False
    msg.flags &= ~(1 << int(f))
    return True


def _isflagset(msg: Any, f: int) -> bool:
    return 0 <= int(f) < 64 and bool(msg.flags & (1 << int(f)))


def _bflags_ctx(msg: Any) -> Any:
    return msg if msg.is_request else None


def _setbflag(msg: Any, f: int) -> bool:
    ctx = _bflags_ctx(msg)
    if ctx is None or not 0 <= int(f) < 32:
        return False
    ctx.bflags |= 1 << int(f)
    return True


def _resetbflag(msg: Any, f: int) -> bool:
    ctx = _bflags_ctx(msg)
    if ctx is None or not 0 <= int(f) < 32:
        return False
    ctx.bflags &= ~(1 << int(f))
    return True


def _isbflagset(msg: Any, f: int) -> bool:
    ctx = _bflags_ctx(msg)
    return ctx is not None and 0 <= int(f) < 32 and bool(ctx.bflags & (1 << int(f)))


# -- request URI / destination ------------------------------------------------------------------
def _seturi(msg: Any, uri: str) -> bool:
    if not msg.is_request:
        return False
    try:
        parse_uri(uri)
        msg.msg.ruri = uri
    except ValueError:
        return False
    return True


def _set_ruri_part(msg: Any, **parts: Any) -> bool:
    u = _ruri(msg)
    if u is None:
        return False
    for k, v in parts.items():
        setattr(u, k, v)
    try:
        msg.msg.ruri = str(u)
    except ValueError:
        return False
    return True


def _setuser(msg: Any, user: str) -> bool:
    return _set_ruri_part(msg, user=str(user) or None)


def _sethost(msg: Any, host: str) -> bool:
    return _set_ruri_part(msg, host=str(host))


def _setdsturi(msg: Any, uri: str) -> bool:
    if not msg.is_request:
        return False
    try:
        parse_uri(uri)
    except ValueError:
        return False
    msg.dst_uri = uri
    return True


def _resetdsturi(msg: Any) -> bool:
    if msg.is_request:
        msg.dst_uri = None
    return True


def _isdsturiset(msg: Any) -> bool:
    return bool(msg.is_request and msg.dst_uri)


def _force_rport(msg: Any) -> bool:
    # the runtime already fills received/rport (RFC 3581) where the client asked for it;
    # force_rport makes replies go to the source port even when it did not
    if not msg.is_request:
        return False
    via = msg.msg.via1
    if via.params.get("rport") in (None, ""):
        via.params["rport"] = str(msg.source.port)
        via.params["received"] = msg.source.host
        from ..sip.headers import split_commas

        parts = split_commas(msg.msg.get_all("via")[0])
        parts[0] = via.to_string()
        msg.msg.replace_first("via", ", ".join(parts))
    return True


def _true(msg: Any) -> bool:
    return True


def _forward(msg: Any) -> int:
    return 1 if msg.is_request and msg.forward() else -1


def _forward_uri(msg: Any, uri: str) -> int:
    return 1 if msg.is_request and msg.forward(uri) else -1


def _set_drop(msg: Any) -> None:
    msg.drop()


def _is_port(attr: str) -> Any:
    def fn(msg: Any, port: int) -> bool:
        ep = getattr(msg, attr)
        return ep is not None and int(ep.port) == int(port)

    return fn


def _get_debug(msg: Any) -> int:
    lvl = logging.getLogger("siprouter").getEffectiveLevel()
    return 3 if lvl <= logging.DEBUG else 2 if lvl <= logging.INFO else 1


def _is_ipv(v6: bool) -> Any:
    def fn(msg: Any) -> bool:
        s = msg.source
        return s is not None and (":" in s.host) == v6

    return fn


_CORE = [
    Export("dbg", _logger(logging.DEBUG), (STR,), NONE, "Log at debug level."),
    Export("err", _logger(logging.ERROR), (STR,), NONE, "Log at error level."),
    Export("info", _logger(logging.INFO), (STR,), NONE, "Log at info level."),
    Export("warn", _logger(logging.WARNING), (STR,), NONE, "Log at warning level."),
    Export("notice", _logger(logging.INFO), (STR,), NONE, "Log at notice (info) level."),
    Export("crit", _logger(logging.CRITICAL), (STR,), NONE, "Log at critical level."),
    Export("log", _log, (STR, STR), NONE, 'Log at a named level ("dbg", "info", "warn", ...).'),
    Export("set_drop", _set_drop, (), NONE,
           "Mark the message to be dropped when the route ends (does not stop the script)."),
    Export("drop", _set_drop, (), NONE, "Same as set_drop: mark only."),
    Export("is_myself", _is_myself, (STR,), BOOL, "True if the URI names this server."),
    Export("is_myself_ruri", _myself_of(lambda m: m.msg.ruri if m.is_request else None), (),
           BOOL, "True if the Request-URI names this server."),
    Export("is_myself_duri", _myself_of(lambda m: getattr(m, "dst_uri", None)), (), BOOL,
           "True if the destination URI names this server."),
    Export("is_myself_nhuri", _myself_of(_nh_uri), (), BOOL,
           "True if the next hop (destination URI or Request-URI) is this server."),
    Export("is_myself_furi", _myself_of(_from_uri), (), BOOL,
           "True if the From URI names this server."),
    Export("is_myself_turi", _myself_of(_to_uri), (), BOOL,
           "True if the To URI names this server."),
    Export("is_myself_suri", _myself_of(_src_uri), (), BOOL,
           "True if the source address is one of this server's."),
    Export("is_myself_srcip", _myself_srcip, (), BOOL,
           "True if the source IP is one of this server's."),
    Export("setflag", _setflag, (INT,), BOOL, "Set message flag (0..63)."),
    Export("resetflag", _resetflag, (INT,), BOOL, "Reset message flag."),
    Export("isflagset", _isflagset, (INT,), BOOL, "True if the message flag is set."),
    Export("setbflag", _setbflag, (INT,), BOOL, "Set a flag of branch 0 (0..31)."),
    Export("resetbflag", _resetbflag, (INT,), BOOL, "Reset a flag of branch 0."),
    Export("isbflagset", _isbflagset, (INT,), BOOL, "True if the flag of branch 0 is set."),
    Export("seturi", _seturi, (STR,), BOOL, "Replace the Request-URI."),
    Export("setuser", _setuser, (STR,), BOOL, "Replace the user part of the Request-URI."),
    Export("sethost", _sethost, (STR,), BOOL, "Replace the host part of the Request-URI."),
    Export("setdsturi", _setdsturi, (STR,), BOOL, "Set the destination URI ($du)."),
    Export("resetdsturi", _resetdsturi, (), BOOL, "Clear the destination URI."),
    Export("isdsturiset", _isdsturiset, (), BOOL, "True if a destination URI is set."),
    Export("force_rport", _force_rport, (), BOOL,
           "Answer to the source port as if the top Via had rport (RFC 3581)."),
    Export("add_local_rport", _true, (), BOOL, "Accepted; no effect (rport on our Via)."),
    Export("is_method", _is_method, (STR,), BOOL, "True if the method is the given one."),
    Export("is_method_in", _is_method_in, (STR,), BOOL,
           "True if the method is among the letters: I INVITE, A ACK, B BYE, C CANCEL, "
           "M MESSAGE, R REGISTER, E PRACK, P PUBLISH, S SUBSCRIBE, N NOTIFY, O OPTIONS, "
           "F REFER, U UPDATE, K KDMQ, G GET, T POST, V PUT, D DELETE."),
    Export("forward", _forward, (), INT,
           "Forward statelessly to $du, the Route set or the Request-URI: 1 / -1."),
    Export("forward_uri", _forward_uri, (STR,), INT, "Forward statelessly to the URI."),
    Export("set_forward_close", _true, (), BOOL, "Accepted; no effect."),
    Export("set_forward_no_connect", _true, (), BOOL, "Accepted; no effect."),
    Export("set_reply_close", _true, (), BOOL, "Accepted; no effect."),
    Export("set_reply_no_connect", _true, (), BOOL, "Accepted; no effect."),
    Export("is_UDP", _proto_is("udp"), (), BOOL, "Received over UDP."),
    Export("is_TCP", _proto_is("tcp"), (), BOOL, "Received over TCP."),
    Export("is_TLS", _proto_is("tls"), (), BOOL, "Received over TLS."),
    Export("is_WS", _proto_is("ws"), (), BOOL, "Received over WebSocket."),
    Export("is_WSS", _proto_is("wss"), (), BOOL, "Received over secure WebSocket."),
    Export("is_WSX", _proto_is("ws", "wss"), (), BOOL, "Received over WS or WSS."),
    Export("is_TCPX", _proto_is("tcp", "tls", "ws", "wss"), (), BOOL,
           "Received over a stream (TCP, TLS, WS, WSS)."),
    Export("is_SCTP", _proto_is("sctp"), (), BOOL, "Received over SCTP."),
    Export("is_proto", _is_proto, (STR,), BOOL,
           "Received over one of: e/u UDP, t TCP, s TLS, c SCTP, w WS, y WSS."),
    Export("is_IPv4", _is_ipv(False), (), BOOL, "Received over IPv4."),
    Export("is_IPv6", _is_ipv(True), (), BOOL, "Received over IPv6."),
    Export("is_src_port", _is_port("source"), (INT,), BOOL, "Source port is the given one."),
    Export("is_dst_port", _is_port("local"), (INT,), BOOL, "Local port is the given one."),
    Export("get_debug", _get_debug, (), INT, "Current log level (1 warn, 2 info, 3 debug)."),
]
for _m in ("INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "SUBSCRIBE", "PUBLISH",
           "NOTIFY", "REFER", "INFO", "UPDATE", "PRACK", "MESSAGE", "KDMQ", "GET", "POST", "PUT",
           "DELETE"):
    _CORE.append(Export(f"is_{_m}", _method_is(_m), (), BOOL, f"True for a {_m} request."))

declare("", tuple(_CORE), doc="Core functions, called directly on KSR.", core=True)


# -- KSR.hdr ------------------------------------------------------------------------------------
def _split_hf(text: str) -> list[tuple[str, str]]:
    """'Name: value\\r\\n' (one or more lines) -> [(name, value)] (ValueError if malformed)."""
    out = []
    for line in str(text).replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise ValueError(f"not a header line: {line!r}")
        out.append((name.strip(), value.strip()))
    if not out:
        raise ValueError("no header line")
    return out


def add_header_lines(msg: Any, text: str, *, first: bool, what: str) -> int:
    """Add the ``Name: value`` lines of ``text`` after the last header (or before the first,
    keeping their order); Kamailio's codes: 1, or -1 (logged as ``what``) for bad text."""
    try:
        lines = _split_hf(text)
        for n, v in reversed(lines) if first else lines:
            msg.msg.add(n, v, first=first)
    except ValueError as e:
        log.error("%s: %s", what, e)
        return -1
    return 1


def _hdr_append(msg: Any, text: str) -> int:
    return add_header_lines(msg, text, first=False, what="KSR.hdr.append")


def _hdr_insert(msg: Any, text: str) -> int:
    return add_header_lines(msg, text, first=True, what="KSR.hdr.insert")


def _place(msg: Any, text: str, hname: str, after: bool) -> int:
    """Insert header lines next to the first ``hname`` (at the end / top when absent)."""
    m = msg.msg
    try:
        lines = _split_hf(text)
    except ValueError as e:
        log.error("KSR.hdr: %s", e)
        return -1
    if not m.has(hname):
        for n, v in lines:
            m.add(n, v, first=not after)
        return 1
    # rebuild the header order around the anchor; untouched lines keep their raw bytes
    names = m.header_names()
    from ..sip.message import canonical_name

    pos = names.index(canonical_name(hname)) + (1 if after else 0)
    for n, v in lines:
        m.insert_at(pos, n, v)
        pos += 1
    return 1


def _hdr_append_after(msg: Any, text: str, hname: str) -> int:
    return _place(msg, text, hname, True)


def _hdr_insert_before(msg: Any, text: str, hname: str) -> int:
    return _place(msg, text, hname, False)


def _hdr_remove(msg: Any, name: str) -> int:
    return 1 if msg.msg.remove(name) > 0 else -1


def _hdr_rmappend(msg: Any, hname: str, text: str) -> int:
    msg.msg.remove(hname)
    return _hdr_append(msg, text)


def _hdr_rminsert(msg: Any, hname: str, text: str) -> int:
    msg.msg.remove(hname)
    return _hdr_insert(msg, text)


def _hdr_is_present(msg: Any, name: str) -> int:
    return 1 if msg.msg.has(name) else -1


def _hdr_append_to_reply(msg: Any, text: str) -> int:
    if not msg.is_request:
        return -1
    try:
        msg.reply_headers.extend(_split_hf(text))
    except ValueError as e:
        log.error("KSR.hdr.append_to_reply: %s", e)
        return -1
    return 1


def _hdr_get(msg: Any, name: str) -> str | None:
    v: str | None = msg.msg.get(name)
    return v


def _hdr_gete(msg: Any, name: str) -> str:
    v: str | None = msg.msg.get(name)
    return "" if v is None else v


def _hdr_getw(msg: Any, name: str) -> str:
    v: str | None = msg.msg.get(name)
    return "<null>" if v is None else v


def _hdr_get_idx(msg: Any, name: str, idx: int) -> str | None:
    vals = msg.msg.get_all(name)
    i = int(idx)
    if -len(vals) <= i < len(vals):
        return str(vals[i])
    return None


declare("hdr", (
    Export("append", _hdr_append, (STR,), INT,
           'Append header line(s) "Name: value\\r\\n" after the last header.'),
    Export("append_after", _hdr_append_after, (STR, STR), INT,
           "Append header line(s) after the first header of the given name."),
    Export("insert", _hdr_insert, (STR,), INT, "Insert header line(s) before all headers."),
    Export("insert_before", _hdr_insert_before, (STR, STR), INT,
           "Insert header line(s) before the first header of the given name."),
    Export("remove", _hdr_remove, (STR,), INT, "Remove every header of that name: 1 / -1."),
    Export("rmappend", _hdr_rmappend, (STR, STR), INT,
           "Remove header hname, then append the header line(s)."),
    Export("rminsert", _hdr_rminsert, (STR, STR), INT,
           "Remove header hname, then insert the header line(s)."),
    Export("is_present", _hdr_is_present, (STR,), INT, "1 if the header exists, else -1."),
    Export("append_to_reply", _hdr_append_to_reply, (STR,), INT,
           "Add header line(s) to the replies this server generates for the request."),
    Export("get", _hdr_get, (STR,), XVAL, "Body of the first header of that name, or None."),
    Export("gete", _hdr_gete, (STR,), XVAL, "Like get, empty string when absent."),
    Export("getw", _hdr_getw, (STR,), XVAL, 'Like get, "<null>" when absent.'),
    Export("get_idx", _hdr_get_idx, (STR, INT), XVAL,
           "Body of the idx-th header of that name (negative counts from the end)."),
), doc="Header operations (Kamailio core).", core=True)


# -- KSR.kx -------------------------------------------------------------------------------------
def _uri_part(get_uri: Any, part: str) -> Any:
    def fn(msg: Any) -> Any:
        u = get_uri(msg)
        if u is None:
            return None
        return getattr(u, part) or None

    return fn


def _rcvadv_ip(msg: Any) -> str | None:
    lst = msg.local
    return None if lst is None else str(lst.advertise_host)


def _rcvadv_port(msg: Any) -> int | None:
    lst = msg.local
    return None if lst is None else int(lst.advertise_port)


def _proto(msg: Any) -> str | None:
    s = msg.source
    return None if s is None else str(s.proto)


def _contact_uri(msg: Any) -> str | None:
    v = msg.msg.get("contact")
    if v is None:
        return None
    try:
        return str(parse_name_addr(v).uri)
    except ValueError:
        return None


def _body(msg: Any) -> str | None:
    b = msg.msg.body
    return b.decode("utf-8", "replace") if b else None


def _au(msg: Any) -> str | None:
    for name in ("proxy-authorization", "authorization"):
        v = msg.msg.get(name)
        if v:
            from ..sip.digest import parse_auth_header

            try:
                params = parse_auth_header(v)[1]
            except ValueError:
                return None
            u = params.get("username")
            return None if u is None else str(u)
    return None


_KX_GETTERS: dict[str, Any] = {
    "ruri": lambda m: m.msg.ruri if m.is_request else None,
    "ruser": _uri_part(_ruri, "user"),
    "rhost": _uri_part(_ruri, "host"),
    "ouri": lambda m: m.received_ruri if m.is_request else None,
    "furi": _from_uri,
    "fuser": _uri_part(lambda m: _hdr_uri(m, "from"), "user"),
    "fhost": _uri_part(lambda m: _hdr_uri(m, "from"), "host"),
    "turi": _to_uri,
    "tuser": _uri_part(lambda m: _hdr_uri(m, "to"), "user"),
    "thost": _uri_part(lambda m: _hdr_uri(m, "to"), "host"),
    "duri": lambda m: getattr(m, "dst_uri", None),
    "cturi": _contact_uri,
    "nhuri": _nh_uri,
    "srcuri": _src_uri,
    "ua": lambda m: m.msg.get("user-agent"),
    "srcip": _src_ip,
    "srcport": _src_port,
    "rcvip": _rcv_ip,
    "rcvport": _rcv_port,
    "rcvadvip": _rcvadv_ip,
    "rcvadvport": _rcvadv_port,
    "proto": _proto,
    "au": _au,
    "method": lambda m: m.msg.method if m.is_request else m.msg.cseq_method,
    "gets_status": lambda m: None if m.is_request else str(m.msg.status),
    "body": _body,
    "callid": lambda m: m.msg.get("call-id"),
    "msgbuf": lambda m: m.msg.to_bytes().decode("utf-8", "replace"),
}


def _kx(name: str, mode: str) -> Any:
    get = _KX_GETTERS[name]
    if mode == "get":
        return get
    empty = "" if mode == "gete" else "<null>"

    def fn(msg: Any) -> Any:
        v = get(msg)
        return empty if v is None else v

    return fn


_KX: list[Export] = []
_ABSENT = {"get": "None", "gete": "empty string", "getw": '"<null>"'}
for _name, _modes in (
    ("ruri", "g"), ("ruser", "gew"), ("rhost", "gew"), ("ouri", "g"), ("furi", "g"),
    ("fuser", "gew"), ("fhost", "gew"), ("turi", "g"), ("tuser", "gew"), ("thost", "gew"),
    ("duri", "gew"), ("cturi", "gew"), ("nhuri", "g"), ("srcuri", "g"), ("ua", "gew"),
    ("srcip", "g"), ("srcport", "g"), ("rcvip", "g"), ("rcvport", "g"), ("rcvadvip", "g"),
    ("rcvadvport", "g"), ("proto", "g"), ("au", "gew"), ("method", "g"), ("body", "gew"),
    ("callid", "g"), ("msgbuf", "g"),
):
    for _mode in _modes:
        _fn = {"g": "get", "e": "gete", "w": "getw"}[_mode]
        _KX.append(Export(f"{_fn}_{_name}", _kx(_name, _fn), (), XVAL,
                          f"The message's {_name} ({_ABSENT[_fn]} when absent)."))


def _get_status(msg: Any) -> int:
    return -1 if msg.is_request else int(msg.msg.status)


def _get_bodylen(msg: Any) -> int:
    return len(msg.msg.body)


def _get_msglen(msg: Any) -> int:
    return len(msg.msg.to_bytes())


def _get_msgtype(msg: Any) -> int:
    return 1 if msg.is_request else 2


def _get_timestamp(msg: Any) -> int:
    import time

    return int(time.time())


def _get_def(msg: Any, name: str) -> str | None:
    return _DEFINES.get(str(name))


def _get_defn(msg: Any, name: str) -> int:
    try:
        return int(_DEFINES.get(str(name), "0") or 0)
    except ValueError:
        return 0


def _ifdef(msg: Any, name: str) -> bool:
    return str(name) in _DEFINES


def _ifndef(msg: Any, name: str) -> bool:
    return str(name) not in _DEFINES


def _get_env(msg: Any, name: str) -> str | None:
    return os.environ.get(str(name))


def _get_envn(msg: Any, name: str) -> int:
    try:
        return int(os.environ.get(str(name), "0"))
    except ValueError:
        return 0


_KX.extend([
    Export("get_status", _get_status, (), INT, "Reply status code (-1 for a request)."),
    Export("gets_status", _kx("gets_status", "get"), (), XVAL, "Reply status code as text."),
    Export("get_bodylen", _get_bodylen, (), INT, "Body length in bytes."),
    Export("get_msglen", _get_msglen, (), INT, "Message length in bytes."),
    Export("get_msgtype", _get_msgtype, (), INT, "1 for a request, 2 for a reply."),
    Export("get_timestamp", _get_timestamp, (), INT, "Current Unix time, seconds."),
    Export("get_def", _get_def, (STR,), XVAL, "Value of a define (None if not defined)."),
    Export("get_defn", _get_defn, (STR,), INT, "Integer value of a define (0 if none)."),
    Export("ifdef", _ifdef, (STR,), BOOL,
           "True if the name is defined ([server] defines, --define NAME)."),
    Export("ifndef", _ifndef, (STR,), BOOL, "True if the name is not defined."),
    Export("get_env", _get_env, (STR,), XVAL, "Environment variable (None if unset)."),
    Export("get_envn", _get_envn, (STR,), INT, "Environment variable as integer."),
])

declare("kx", tuple(_KX), doc="Getters of message attributes (Kamailio kemix); get_* return "
        'None when absent, gete_* an empty string, getw_* "<null>".', core=True, module="kemix")
