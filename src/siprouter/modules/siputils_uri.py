"""More ``KSR.siputils`` functions: Request-URI parameters, E.164 users and OPTIONS replies.

(``has_totag``, ``is_request``, ``is_reply``, ``is_first_hop`` are declared in
``modules/siputils.py``; declarations of one table add up.)

- ``is_uri_user_e164(uri)``: 1 if the user part of ``uri`` is "+" and 2..15 digits (Kamailio:
  3..``e164_max_len`` = 16 characters with the "+"), else -1.
- ``uri_param(name)`` / ``uri_param_value(name, value)``: 1 if the Request-URI has the parameter
  (without a value / with exactly that value), else -1.
- ``add_uri_param(param)``: append ``;param`` to the Request-URI: 1 / -1.
- ``options_reply()``: answer an OPTIONS whose R-URI has no user with 200 OK and Kamailio's
  Accept / Accept-Encoding / Accept-Language / Supported headers: 1 / -1.
"""

from __future__ import annotations

import logging
from typing import Any

from ..sip.uri import parse_uri

__all__ = ["add_uri_param", "is_uri_user_e164", "options_reply", "uri_param"]

log = logging.getLogger("siprouter.siputils")

E164_MAX_LEN = 16  # Kamailio siputils e164_max_len default ("+" and up to 15 digits)

# Kamailio siputils options.h defaults (modparams opt_accept, opt_accept_enc, ...)
OPT_ACCEPT = "*/*"
OPT_ACCEPT_ENC = ""
OPT_ACCEPT_LANG = "en"
OPT_SUPPORTED = ""


def e164_check(user: str) -> bool:
    return 2 < len(user) <= E164_MAX_LEN and user[0] == "+" and user[1:].isdigit() \
        and user[1:].isascii()


def is_uri_user_e164(msg: Any, uri: str) -> int:
    colon = uri.find(":")
    if colon < 0:
        return -1
    at = uri.find("@", colon + 1)
    if at < 0:
        return -1
    return 1 if e164_check(uri[colon + 1:at]) else -1


def uri_param(msg: Any, name: str, value: str | None = None) -> int:
    if not msg.is_request:
        return -1
    try:
        u = parse_uri(msg.msg.ruri)
    except ValueError:
        return -1
    for k, v in u.params.items():
        if k == name.lower():
            if value is None:
                return 1 if not v else -1
            return 1 if v == value else -1
    return -1


def add_uri_param(msg: Any, param: str) -> int:
    if not param:
        return 1
    if not msg.is_request:
        return -1
    ruri = msg.msg.ruri
    try:
        u = parse_uri(ruri)
    except ValueError:
        return -1
    if not u.headers:
        new = f"{ruri};{param}"
    else:
        q = ruri.find("?")
        new = f"{ruri[:q]};{param}{ruri[q:]}"
    try:
        parse_uri(new)
    except ValueError:
        log.error("add_uri_param: %r makes a bad URI", param)
        return -1
    msg.msg.ruri = new
    return 1


def options_reply(msg: Any) -> int:
    if not msg.is_request or msg.msg.method != "OPTIONS":
        log.error("options_reply: not an OPTIONS request")
        return -1
    try:
        u = parse_uri(msg.msg.ruri)
    except ValueError:
        return -1
    if u.user:
        log.error("options_reply: the R-URI has a user part")
        return -1
    headers = [("Accept", OPT_ACCEPT), ("Accept-Encoding", OPT_ACCEPT_ENC),
               ("Accept-Language", OPT_ACCEPT_LANG), ("Supported", OPT_SUPPORTED)]
    ok = msg.reply(200, "OK", headers=[(n, v) for n, v in headers if v])
    return 1 if ok else -1


def _declare() -> None:
    from .exports import INT, STR, Export, declare

    declare("siputils", (
        Export("is_uri_user_e164", is_uri_user_e164, (STR,), INT,
               "1 if the user part of the URI is an E.164 number (+ and digits)."),
        Export("uri_param", lambda m, n: uri_param(m, n), (STR,), INT,
               "1 if the R-URI has the parameter (without a value), else -1."),
        Export("uri_param_value", uri_param, (STR, STR), INT,
               "1 if the R-URI has the parameter with that value, else -1."),
        Export("add_uri_param", add_uri_param, (STR,), INT,
               "Append ;param to the R-URI."),
        Export("options_reply", options_reply, (), INT,
               "Answer an OPTIONS to this server (R-URI without user) with 200 OK."),
    ))


_declare()
