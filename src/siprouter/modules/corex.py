"""Core extensions (Kamailio ``corex``): ``KSR.corex``.

- ``has_ruri_user()``: 1 if the Request-URI has a user part, else -1 (replies: -1).
- ``has_user_agent()``: 1 if the message has a User-Agent header, else -1.
- ``append_branch()`` / ``append_branch_uri(uri)`` / ``append_branch_uri_q(uri, q)``: add a
  branch (the current R-URI and $du, or the given URI) to the destination set: 1 / -1.
- ``send_data(uri, data)``: send raw ``data`` to the address of a SIP URI (the transport of
  its ``;transport=`` parameter, UDP by default): 1 / -1.
"""

from __future__ import annotations

import logging
from typing import Any

from ..sip.uri import parse_uri

__all__ = ["append_branch", "has_ruri_user", "has_user_agent", "send_data"]

log = logging.getLogger("siprouter.corex")


def has_ruri_user(msg: Any) -> int:
    if not msg.is_request:
        return -1
    try:
        u = parse_uri(msg.msg.ruri)
    except ValueError:
        return -1
    return 1 if u.user else -1


def has_user_agent(msg: Any) -> int:
    return 1 if msg.msg.has("user-agent") else -1


def append_branch(msg: Any, uri: str | None = None, q: str | None = None) -> int:
    if not msg.is_request:
        return -1
    if uri is not None:
        try:
            parse_uri(uri)
        except ValueError:
            log.error("append_branch: bad URI %r", uri)
            return -1
    if q is not None:
        try:
            qv = float(q)
        except ValueError:
            return -1
        if not 0.0 <= qv <= 1.0:
            return -1
    msg.append_branch(uri or None)
    return 1


def send_data(msg: Any, uri: str, data: str) -> int:
    core = msg.core
    dest = core._resolve(str(uri), "udp")
    if dest is None:
        log.error("send_data: cannot resolve %r", uri)
        return -1
    lst = core._pick_listener(dest)
    if lst is None:
        log.error("send_data: no socket for %s", dest.proto)
        return -1
    core.transport.send(dest, str(data).encode("utf-8"), None, lst)
    return 1


def _declare() -> None:
    from .exports import INT, STR, Export, declare

    declare("corex", (
        Export("has_ruri_user", has_ruri_user, (), INT,
               "1 if the Request-URI has a user part, else -1."),
        Export("has_user_agent", has_user_agent, (), INT,
               "1 if the message has a User-Agent header, else -1."),
        Export("append_branch", lambda m: append_branch(m), (), INT,
               "Add the current R-URI and $du as a new branch."),
        Export("append_branch_uri", lambda m, u: append_branch(m, u), (STR,), INT,
               "Add a branch to the given URI."),
        Export("append_branch_uri_q", append_branch, (STR, STR), INT,
               "Add a branch to the given URI with a q value (\"0.5\")."),
        Export("send_data", send_data, (STR, STR), INT,
               "Send raw data to the address of a SIP URI."),
    ), doc="Core extensions (Kamailio corex).")


_declare()
