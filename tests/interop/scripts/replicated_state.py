"""Routing script of the replicated-state interop checks (several workers on one port).

The ipban + pike checks of Kamailio's basic configuration, preceded by two test hooks that
pike does not count: an OPTIONS with ``X-Ht-Set: key=value`` stores ``value`` under ``key`` in
the ``shared`` htable, one with ``X-Ht-Get: key`` answers the stored value in ``X-Ht-Value``.
Every 200 names the worker process that answered (``X-Worker``: its pid)."""

from __future__ import annotations

import os
from typing import Any

from siprouter.modules import htable, pike


def request_route(req: Any) -> None:
    srcip = req.source.host
    if htable.sht_match_name(req, "ipban", "eq", srcip) > 0:
        req.exit()  # banned: no answer
    worker = ("X-Worker", str(os.getpid()))
    if req.method == "OPTIONS":
        spec = req.header("x-ht-set")
        if spec is not None:
            key, _, value = spec.partition("=")
            htable.sht_sets(req, "shared", key.strip(), value.strip())
            req.reply(200, "Stored", headers=[worker])
            req.exit()
        key = req.header("x-ht-get")
        if key is not None:
            value = htable.sht_gete(req, "shared", key.strip())
            req.reply(200, "Value", headers=[worker, ("X-Ht-Value", str(value))])
            req.exit()
    if pike.pike_check_req(req) < 0:
        htable.sht_seti(req, "ipban", srcip, 1)
        req.exit()
    if req.method == "OPTIONS":
        req.reply(200, "Keepalive", headers=[worker])
        req.exit()
    req.reply(404, "Not here")
