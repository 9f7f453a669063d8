"""Benchmark routing script for "register-auth": digest-authenticated REGISTER through the KSR
API, the same steps as bench/kamailio/kemi.lua and native.cfg with ``-A WITH_AUTH``
(Max-Forwards, 403 for foreign domains, auth_check / auth_challenge / consume_credentials,
save). Used with bench's generated config that loads auth and auth_db over the SQLite
subscriber table."""

import KSR


def ksr_request_route(msg):
    if KSR.maxfwd.process_maxfwd(10) < 0:
        KSR.sl.sl_send_reply(483, "Too Many Hops")
        return -255
    if not KSR.is_myself_ruri():
        KSR.sl.sl_send_reply(403, "Not relaying")
        return -255
    if KSR.is_REGISTER():
        if KSR.auth_db.auth_check(KSR.kx.get_fhost(), "subscriber", 1) < 0:
            KSR.auth.auth_challenge(KSR.kx.get_fhost(), 0)
            return -255
        KSR.auth.consume_credentials()
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()
        return -255
    KSR.sl.sl_send_reply(404, "Not here")
    return -255
