"""Routing script of the auth interop tests: the ksr_route_auth logic of Kamailio's
kamailio-basic-kemi scripts on the Pythonic API, calling the KSR.auth / KSR.auth_db exports."""

from __future__ import annotations

from typing import Any

import siprouter.modules.auth_db  # noqa: F401  (declares KSR.auth and KSR.auth_db)
from siprouter.modules.exports import declared


def _fn(table: str, name: str) -> Any:
    e = declared()[table].get(name)
    assert e is not None
    return e.func


auth_check = _fn("auth_db", "auth_check")
auth_challenge = _fn("auth", "auth_challenge")
consume_credentials = _fn("auth", "consume_credentials")


def request_route(req: Any) -> None:
    if req.method == "ACK":
        return
    if req.method == "OPTIONS":  # the readiness probe
        req.reply(200, "Keepalive")
        return
    realm = "127.0.0.1"
    if auth_check(req, realm, "subscriber", 1) < 0:
        auth_challenge(req, realm, 0)
        return
    if req.method == "REGISTER":
        if req.save("location", 0) < 0:
            req.reply(500, "Server Internal Error")
        return
    consume_credentials(req)
    req.reply(404, "Not Found")
