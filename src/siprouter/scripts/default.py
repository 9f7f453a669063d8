"""siprouter's default routing script: what a plain Kamailio config does, without auth.

- sanity: Max-Forwards (483 when exhausted), the server's own OPTIONS keep-alive (200);
- CANCEL and retransmissions are handled by the transaction layer before this runs;
- in-dialog requests follow their Route set (loose routing), else 404;
- REGISTER for our domains: registrar;
- initial requests for our domains: location lookup and relay (404 when not registered);
- everything else: 403 "Not relaying" (no open relay by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from siprouter.sip.uri import parse_uri

if TYPE_CHECKING:  # pragma: no cover
    from siprouter.scripting.api import Request


def request_route(req: Request) -> None:
    # per-request sanity (Kamailio's route[REQINIT])
    if req.process_maxfwd(10) == -1:
        req.reply(483, "Too Many Hops")
        return
    if req.method == "OPTIONS" and req.is_myself() and not _ruri_user(req):
        req.reply(200, "Keepalive")
        return

    # in-dialog requests (route[WITHINDLG])
    if req.has_to_tag:
        if req.loose_route() > 0:
            if req.method == "INVITE":
                req.record_route()
            req.relay()
            return
        if req.method == "ACK":
            return  # an ACK without a route: nothing to do (Kamailio drops it too)
        req.reply(404, "Not here")
        return

    if req.method == "ACK":
        # ACK for a non-2xx absorbed by its transaction never gets here; stray ones are dropped
        return

    # record-route dialog-forming requests so in-dialog ones come back through us
    if req.method in ("INVITE", "SUBSCRIBE", "REFER", "NOTIFY"):
        req.record_route()

    if not req.is_myself():
        req.reply(403, "Not relaying")
        return

    if req.method == "REGISTER":
        req.save("location")
        return

    if not _ruri_user(req):
        if req.method in ("INVITE", "MESSAGE", "SUBSCRIBE", "REFER", "NOTIFY", "INFO",
                          "UPDATE", "PRACK", "PUBLISH", "BYE", "CANCEL"):
            req.reply(484, "Address Incomplete")
        else:
            req.reply(501, "Not Implemented")
        return

    # route[LOCATION]
    rc = req.lookup("location")
    if rc < 0:
        if rc in (-1, -3):
            req.reply(404, "Not Found")
        else:
            req.reply(405, "Method Not Allowed")
        return
    req.relay()


def _ruri_user(req: Request) -> str | None:
    try:
        return parse_uri(req.ruri).user
    except ValueError:
        return None
