"""Record-Route and loose routing (Kamailio ``rr``, RFC 3261 §16.4 / §16.6 step 4): ``KSR.rr``.

``loose_route`` remembers the Route entries it consumed for this request, so that
``check_route_param`` and ``is_direction`` can look at the parameters of our own Route
(Kamailio keeps them the same way).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..sip.headers import parse_name_addr
from ..sip.uri import parse_uri
from .exports import INT, STR, Export, declare

__all__: list[str] = []

log = logging.getLogger("siprouter.rr")

_RE_CACHE: dict[str, re.Pattern[str]] = {}


def _re(text: str) -> re.Pattern[str] | None:
    p = _RE_CACHE.get(text)
    if p is None:
        try:
            p = re.compile(text)
        except re.error as e:
            log.error("bad regular expression %r: %s", text, e)
            return None
        if len(_RE_CACHE) < 1024:
            _RE_CACHE[text] = p
    return p


def _record_route(msg: Any) -> int:
    if not msg.is_request:
        return -1
    msg.record_route()
    return 1


def _record_route_params(msg: Any, params: str) -> int:
    if not msg.is_request:
        return -1
    msg.record_route(str(params))
    return 1


def _preset_value(addr: str, ftag: str | None, r2: bool) -> str:
    a = str(addr)
    if a.startswith(("sip:", "sips:")):
        a = a.split(":", 1)[1]
    out = f"<sip:{a};lr"
    if r2:
        out += ";r2=on"
    if ftag:
        out += f";ftag={ftag}"
    return out + ">"


def _record_route_preset(msg: Any, addr: str, addr2: str) -> int:
    if not msg.is_request:
        return -1
    ftag = msg.msg.from_tag
    try:
        if addr2:
            msg.msg.insert_top("Record-Route", _preset_value(addr2, ftag, True))
            msg.msg.insert_top("Record-Route", _preset_value(addr, ftag, True))
        else:
            msg.msg.insert_top("Record-Route", _preset_value(addr, ftag, False))
    except ValueError as e:
        log.error("record_route_preset: %s", e)
        return -1
    return 1


def _record_route_preset_one(msg: Any, addr: str) -> int:
    return _record_route_preset(msg, addr, "")


def _loose_route(msg: Any) -> int:
    if not msg.is_request:
        return -1
    rc: int = msg.loose_route()  # records the Route values it consumed in vars
    return rc


def _add_rr_param(msg: Any, param: str) -> int:
    if not msg.is_request:
        return -1
    p = str(param)
    msg.rr_params += p if p.startswith(";") else ";" + p
    return 1


def _own_route_params(msg: Any) -> str | None:
    consumed = msg.vars.get("__rr_consumed") if msg.is_request else None
    if not consumed:
        return None
    try:
        u = parse_uri(parse_name_addr(consumed[0]).uri)
    except ValueError:
        return None
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in u.params.items())


def _check_route_param(msg: Any, regex: str) -> int:
    params = _own_route_params(msg)
    if params is None:
        return -1
    p = _re(str(regex))
    return 1 if p is not None and p.search(params) else -1


def _is_direction(msg: Any, direction: str) -> int:
    consumed = msg.vars.get("__rr_consumed") if msg.is_request else None
    if not consumed:
        return -1
    try:
        u = parse_uri(parse_name_addr(consumed[0]).uri)
    except ValueError:
        return -1
    ftag = u.params.get("ftag")
    if not ftag:
        return -1
    # downstream: from the caller (the From tag is the one recorded), upstream: from the callee
    down = ftag == msg.msg.from_tag
    want = str(direction).lower()
    if want == "downstream":
        return 1 if down else -1
    if want == "upstream":
        return -1 if down else 1
    return -1


def _remove_record_route(msg: Any) -> int:
    if msg.is_request:
        msg.record_routed = False
        msg.rr_params = ""
    return 1


declare("rr", (
    Export("record_route", _record_route, (), INT,
           "Add Record-Route for this server when the request is forwarded (two entries with "
           "r2=on when the transport or interface changes)."),
    Export("record_route_params", _record_route_params, (STR,), INT,
           "record_route with extra URI parameters."),
    Export("record_route_preset", _record_route_preset, (STR, STR), INT,
           "Insert Record-Route with the given address (and a second one with r2=on when "
           "addr2 is not empty)."),
    Export("record_route_preset_one", _record_route_preset_one, (STR,), INT,
           "Insert one Record-Route with the given address."),
    Export("remove_record_route", _remove_record_route, (), INT,
           "Cancel record_route for this request."),
    Export("loose_route", _loose_route, (), INT,
           "Process Route headers (RFC 3261 §16.4): 1 routed by Route, 2 our Route consumed and "
           "the R-URI is the target, -1 no Route header."),
    Export("add_rr_param", _add_rr_param, (STR,), INT,
           "Add a parameter to our Record-Route (e.g. ';nat=yes')."),
    Export("check_route_param", _check_route_param, (STR,), INT,
           "1 if the parameters of our Route (consumed by loose_route) match the regex."),
    Export("is_direction", _is_direction, (STR,), INT,
           '"downstream" (from the caller) or "upstream": 1 / -1, from the ftag of our Route.'),
), doc="Record-Route and loose routing (Kamailio rr).")
