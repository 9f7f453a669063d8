"""Benchmark routing script: record-route and relay every initial request to its Request-URI.

The same sanity steps as siprouter's default script (Max-Forwards, OPTIONS keep-alive,
in-dialog loose routing); the Kamailio equivalent is bench/kamailio/native.cfg (and kemi.lua)
with ``-A WITH_RELAY``. Used by the "call-direct" scenario: the caller addresses the SIPp UAS
directly in the Request-URI and the proxy relays statefully to it. Never an open relay
outside a benchmark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from siprouter.scripting.api import Request


def request_route(req: Request) -> None:
    if req.process_maxfwd(10) == -1:
        req.reply(483, "Too Many Hops")
        return
    if req.has_to_tag:
        if req.loose_route() > 0:
            if req.method == "INVITE":
                req.record_route()
            req.relay()
            return
        if req.method == "ACK":
            return
        req.reply(404, "Not here")
        return
    if req.method == "ACK":
        return
    if req.method == "OPTIONS" and req.is_myself():
        req.reply(200, "Keepalive")
        return
    req.record_route()
    req.relay()
