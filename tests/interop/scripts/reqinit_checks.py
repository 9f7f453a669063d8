"""Routing script of the interop checks: the request-initial checks of Kamailio's basic KEMI
configuration (ipban htable + pike, Max-Forwards, OPTIONS keepalive, sanity), then a
registrar for REGISTER (with the NAT handling of the basic config) and 404 for the rest."""

from __future__ import annotations

from typing import Any

from siprouter.modules import corex, htable, nathelper, pike, sanity

FLB_NATB = 6
FLB_NATSIPPING = 7


def request_route(req: Any) -> None:
    srcip = req.source.host
    if htable.sht_match_name(req, "ipban", "eq", srcip) > 0:
        req.exit()  # banned: no answer
    if pike.pike_check_req(req) < 0:
        htable.sht_seti(req, "ipban", srcip, 1)
        req.exit()
    if req.process_maxfwd(10) < 0:
        req.reply(483, "Too Many Hops")
        req.exit()
    if req.method == "OPTIONS" and req.is_myself() and corex.has_ruri_user(req) < 0:
        req.reply(200, "Keepalive")
        req.exit()
    if sanity.sanity_check(req, 17895, 7) < 0:
        req.exit()
    if req.method == "REGISTER":
        if nathelper.nat_uac_test(req, 19) > 0 or req.header("x-nat") == "yes":
            nathelper.fix_nated_register(req)
            req.bflags |= (1 << FLB_NATB) | (1 << FLB_NATSIPPING)
        req.save("location")
        req.exit()
    req.reply(404, "Not here")
