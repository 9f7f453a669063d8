"""Registrar exports (Kamailio ``registrar``): ``KSR.registrar``.

The REGISTER semantics live in :mod:`siprouter.modules.registrar`, the table in
:mod:`siprouter.modules.location`; these functions translate Kamailio's calls and codes.
``save`` flags (Kamailio registrar docs): 0x01 do not send the reply (the script answers,
e.g. with ``reg_send_reply``), 0x02 memory only, 0x04 do not store (answer only), 0x08 ...
flags other than 0x01 are passed to the registrar.
"""

from __future__ import annotations

import logging
from typing import Any

from .exports import INT, STR, Export, declare

__all__: list[str] = []

log = logging.getLogger("siprouter.registrar")


def _save(msg: Any, table: str, flags: int) -> int:
    if not msg.is_request or msg.msg.method != "REGISTER":
        return -1
    rc: int = msg.save(str(table) or "location", int(flags))
    return rc


def _save_uri(msg: Any, table: str, flags: int, uri: str) -> int:
    if not msg.is_request or msg.msg.method != "REGISTER":
        return -1
    rc: int = msg.save(str(table) or "location", int(flags), str(uri))
    return rc


def _reg_send_reply(msg: Any) -> int:
    pending = msg.vars.pop("__reg_reply", None) if msg.is_request else None
    if pending is None:
        return -1
    status, reason, headers = pending
    return 1 if msg.reply(status, reason, headers=headers) else -1


def _lookup(msg: Any, table: str) -> int:
    if not msg.is_request:
        return -3
    return int(msg.lookup(str(table) or "location"))


def _lookup_uri(msg: Any, table: str, uri: str) -> int:
    if not msg.is_request:
        return -3
    return int(msg.lookup(str(table) or "location", str(uri)))


def _lookup_branches(msg: Any, table: str) -> int:
    """lookup() on the R-URI and on every branch URI; the found contacts replace them."""
    if not msg.is_request:
        return -1
    reg = msg.core.registrar
    if reg is None:
        return -1
    now = msg.core.wall_clock()
    olds = [(msg.msg.ruri, msg.dst_uri, []), *list(msg.branches)]
    new: list[tuple[str, str | None, list[str]]] = []
    qs: dict[str, float] = {}
    for uri, _dst, _path in olds:
        try:
            found = reg.branches(uri, now)
        except ValueError:
            found = []
        if not found:
            continue
        for b in found:
            new.append((b.uri, b.dst_uri, list(b.route)))
            qs[b.uri] = b.q
    if not new:
        return -1
    first = new[0]
    msg.msg.ruri = first[0]
    msg.dst_uri = first[1]
    msg.vars["__path"] = first[2]
    msg.vars["__q"] = qs
    msg.branches = new[1:]
    return 1


def _registered(msg: Any, table: str) -> int:
    return 1 if msg.is_request and msg.registered(str(table) or "location") else -1


def _registered_uri(msg: Any, table: str, uri: str) -> int:
    return 1 if msg.is_request and msg.registered(str(table) or "location", str(uri)) else -1


def _unregister(msg: Any, table: str, uri: str) -> int:
    loc = msg.core.location
    if loc is None:
        return -1
    try:
        loc.remove_all(loc.normalize_aor(str(uri)))
    except Exception as e:
        log.error("unregister %s failed: %s", uri, e)
        return -1
    return 1


declare("registrar", (
    Export("save", _save, (STR, INT), INT,
           "Process a REGISTER into the table and reply (flags: 0x01 no reply, then use "
           "reg_send_reply): 1 ok, -1 error (the reply says why)."),
    Export("save_uri", _save_uri, (STR, INT, STR), INT, "save for the given AoR URI."),
    Export("reg_send_reply", _reg_send_reply, (), INT,
           "Send the reply of a save() done with flag 0x01."),
    Export("lookup", _lookup, (STR,), INT,
           "Request-URI AoR -> contacts (first in R-URI, the others as branches): 1 found, "
           "-1 not found, -2 found but method not allowed, -3 internal error."),
    Export("lookup_uri", _lookup_uri, (STR, STR), INT, "lookup for the given URI."),
    Export("lookup_branches", _lookup_branches, (STR,), INT,
           "lookup on the R-URI and every branch: 1 if any contact was found, else -1."),
    Export("registered", _registered, (STR,), INT,
           "1 if the Request-URI AoR has a binding, else -1."),
    Export("registered_uri", _registered_uri, (STR, STR), INT, "registered for the URI."),
    Export("unregister", _unregister, (STR, STR), INT,
           "Remove every binding of the AoR URI: 1 ok, -1 error."),
), doc="REGISTER processing and location lookups (Kamailio registrar).")
