"""Transaction management exports (Kamailio ``tm``): ``KSR.tm``.

The transaction machinery itself lives in ``transaction/`` and ``proxy/``; these functions only
translate Kamailio's calls and return codes onto the script context and the runtime.
What reaches a script has passed the runtime's transaction matching: retransmissions, ACKs for
non-2xx replies and CANCELs for known INVITEs were absorbed there. So ``t_check_trans`` answers
as Kamailio would for what is left: a CANCEL here matched no INVITE (-1), an ACK here is an
end-to-end ACK (1 when its INVITE transaction is still known, else -1), other requests are new
(-1), or 1 when ``t_newtran`` already created their transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from .exports import INT, STR, Export, declare

__all__: list[str] = []

log = logging.getLogger("siprouter.tm")


def _req(msg: Any) -> Any:
    return msg if msg.is_request else None


def _t_relay(msg: Any) -> int:
    if not msg.is_request:
        return -1
    if msg.route == "branch":
        return -1
    return 1 if msg.relay() else -1


def _t_relay_to_proto_addr(msg: Any, proto: str, host: str, port: int) -> int:
    if not msg.is_request:
        return -1
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    p = str(proto).lower() or "udp"
    uri = f"sip:{h}:{int(port)}" + ("" if p == "udp" else f";transport={p}")
    return 1 if msg.relay(uri) else -1


def _t_relay_to_proxy(msg: Any, proxy: str) -> int:
    # "proto:host:port" or a SIP URI
    text = str(proxy)
    if not text.startswith(("sip:", "sips:")):
        parts = text.split(":")
        if len(parts) == 3:
            return _t_relay_to_proto_addr(msg, parts[0], parts[1], int(parts[2]))
        text = "sip:" + text
    return 1 if msg.is_request and msg.relay(text) else -1


def _on(attr: str) -> Any:
    def fn(msg: Any, name: str) -> int:
        if not msg.is_request:
            return -1
        setattr(msg, attr, str(name) or None)
        return 1

    return fn


_IS_SET = {"branch_route": "branch_handler", "failure_route": "failure_handler",
           "onreply_route": "reply_handler", "branch_failure_route": "branch_failure_handler"}


def _t_is_set(msg: Any, target: str) -> int:
    attr = _IS_SET.get(str(target))
    if attr is None or not msg.is_request:
        return -1
    if getattr(msg, attr) is not None:
        return 1
    rc = msg.rc
    if rc is not None and getattr(rc, attr, None) is not None:
        return 1
    return -1


def _t_check_trans(msg: Any) -> int:
    if not msg.is_request:
        # a reply reaching the script: does it belong to one of our transactions?
        return 1 if msg.core.tl.match_response(msg.msg) is not None else -1
    method = msg.msg.method
    if method == "CANCEL":
        return -1  # a CANCEL that matched an INVITE never reaches the script
    if method == "ACK":
        return 1 if msg.vars.get("__e2e_ack") else -1
    return 1 if (msg.st is not None or msg.rc is not None) else -1


def _t_newtran(msg: Any) -> int:
    if not msg.is_request:
        return -1
    rc: int = msg.core.newtran(msg)
    return rc


def _t_reply(msg: Any, code: int, reason: str) -> int:
    if not msg.is_request or msg.msg.method == "ACK":
        return -1
    if msg.st is None and msg.rc is None and msg.core.newtran(msg) < 0:
        return -1
    return 1 if msg.reply(int(code), str(reason) or None) else -1


def _t_reply_error(msg: Any) -> int:
    return _t_reply(msg, 500, "Server Internal Error")


def _t_is_canceled(msg: Any) -> int:
    rc = msg.rc
    return 1 if rc is not None and rc.cancelled else -1


def _t_is_expired(msg: Any) -> int:
    return -1


def _t_set_fr(msg: Any, fr_inv_ms: int, fr_ms: int) -> int:
    if not msg.is_request:
        return -1
    if int(fr_inv_ms) > 0:
        msg.fr_inv_timeout = int(fr_inv_ms) / 1000.0
    if int(fr_ms) > 0:
        msg.fr_timeout = int(fr_ms) / 1000.0
    rc = msg.rc
    if rc is not None:
        if msg.fr_inv_timeout:
            rc.fr_inv_timeout = msg.fr_inv_timeout
        if msg.fr_timeout:
            rc.fr_timeout = msg.fr_timeout
    return 1


def _t_set_fr_inv(msg: Any, fr_inv_ms: int) -> int:
    return _t_set_fr(msg, fr_inv_ms, 0)


def _t_reset_fr(msg: Any) -> int:
    if msg.is_request:
        msg.fr_timeout = msg.fr_inv_timeout = None
        rc = msg.rc
        if rc is not None:
            rc.fr_timeout = msg.core.fr_timeout
            rc.fr_inv_timeout = msg.core.fr_inv_timeout
    return 1


def _q_of(msg: Any, uri: str) -> float:
    qs = msg.vars.get("__q")
    if isinstance(qs, dict):
        return float(qs.get(uri, 1.0))
    return 1.0


def _t_load_contacts(msg: Any) -> int:
    """Kamailio t_load_contacts: the destination set (R-URI + branches) into q-ordered groups."""
    if not msg.is_request:
        return -1
    if not msg.branches:
        return 1  # only the Request-URI: nothing to order
    path = msg.vars.get("__path")
    targets = [(msg.msg.ruri, msg.dst_uri, list(path) if isinstance(path, list) else [])]
    targets.extend(msg.branches)
    msg.branches = []
    ordered = sorted(targets, key=lambda t: -_q_of(msg, t[0]))  # stable: equal q keep order
    groups: list[list[tuple[str, str | None, list[str]]]] = []
    last_q: float | None = None
    for t in ordered:
        q = _q_of(msg, t[0])
        if groups and q == last_q:
            groups[-1].append(t)
        else:
            groups.append([t])
        last_q = q
    msg.vars["__contacts"] = groups
    return 1


def _t_next_contacts(msg: Any) -> int:
    """Kamailio t_next_contacts: the next q group into R-URI and branches; -1 when none left."""
    if not msg.is_request:
        return -1
    groups = msg.vars.get("__contacts")
    if not groups:
        return -1
    first, *rest = groups.pop(0)
    msg.msg.ruri = first[0]
    msg.dst_uri = first[1]
    msg.vars["__path"] = list(first[2])
    msg.branches = list(rest)
    return 1


def _t_get_status_code(msg: Any) -> int:
    rc = msg.rc
    if rc is not None and rc.final_status:
        return int(rc.final_status)
    return -1


def _t_get_branch_index(msg: Any) -> int:
    if msg.is_request:
        return int(msg.branch_index)
    return int(msg.branch.idx) if msg.branch is not None else -1


def _t_exists(msg: Any) -> int:
    return 1 if msg.is_request and (msg.st is not None or msg.rc is not None) else -1


def _t_lookup_cancel(msg: Any) -> int:
    return -1  # a CANCEL with a transaction is handled before the script (see above)


def _t_lookup_request(msg: Any) -> int:
    return -1  # retransmissions are absorbed before the script


def _one(msg: Any) -> int:
    return 1


def _t_any_timeout(msg: Any) -> int:
    rc = msg.rc
    if rc is None:
        return -1
    return 1 if any(b.synthetic and b.status == 408 for b in rc.branches) else -1


def _t_any_replied(msg: Any) -> int:
    rc = msg.rc
    if rc is None:
        return -1
    return 1 if any(b.provisional or (b.status and not b.synthetic) for b in rc.branches) else -1


declare("tm", (
    Export("t_relay", _t_relay, (), INT,
           "Forward statefully to $du / Route / R-URI and the added branches: 1, or -1 on "
           "error. In a failure route it starts the new branches of the transaction."),
    Export("t_relay_to_proto_addr", _t_relay_to_proto_addr, (STR, STR, INT), INT,
           "t_relay to proto (udp/tcp/tls), host, port."),
    Export("t_relay_to_proxy", _t_relay_to_proxy, (STR,), INT,
           't_relay to "proto:host:port" or a SIP URI.'),
    Export("t_on_branch", _on("branch_handler"), (STR,), INT,
           "Name of the function run for each branch before it is sent."),
    Export("t_on_failure", _on("failure_handler"), (STR,), INT,
           "Name of the function run when every branch failed (armed once)."),
    Export("t_on_branch_failure", _on("branch_failure_handler"), (STR,), INT,
           "Name of the function run for each branch that gets a negative reply."),
    Export("t_on_reply", _on("reply_handler"), (STR,), INT,
           "Name of the function run for each reply of the transaction."),
    Export("t_is_set", _t_is_set, (STR,), INT,
           'Is "branch_route", "failure_route", "onreply_route" or "branch_failure_route" '
           "set: 1 / -1."),
    Export("t_check_trans", _t_check_trans, (), INT,
           "-1 for a new request or a CANCEL/ACK matching no transaction, 1 for an e2e ACK of a "
           "known INVITE or a request whose transaction exists (retransmissions, ACKs of "
           "negative replies and matched CANCELs are handled before the script; see module "
           "doc)."),
    Export("t_newtran", _t_newtran, (), INT,
           "Create the server transaction: 1, -1 on error (ACK)."),
    Export("t_reply", _t_reply, (INT, STR), INT,
           "Reply statefully (creates the transaction when needed): 1 / -1."),
    Export("t_send_reply", _t_reply, (INT, STR), INT, "Same as t_reply."),
    Export("t_reply_error", _t_reply_error, (), INT, "Statefully reply 500."),
    Export("t_is_canceled", _t_is_canceled, (), INT,
           "1 if the transaction was cancelled by the caller, else -1."),
    Export("t_is_expired", _t_is_expired, (), INT, "-1 (a transaction here never expired)."),
    Export("t_set_fr", _t_set_fr, (INT, INT), INT,
           "Set fr_inv_timer and fr_timer for this transaction, milliseconds (0 = keep)."),
    Export("t_set_fr_inv", _t_set_fr_inv, (INT,), INT, "Set fr_inv_timer, milliseconds."),
    Export("t_reset_fr", _t_reset_fr, (), INT, "Back to the configured timers."),
    Export("t_load_contacts", _t_load_contacts, (), INT,
           "Order the destination set by q for serial forking: 1 (nothing to do with one "
           "target)."),
    Export("t_next_contacts", _t_next_contacts, (), INT,
           "Put the next highest-q group into R-URI and branches: 1, -1 when none left."),
    Export("t_get_status_code", _t_get_status_code, (), INT,
           "Final status sent for the transaction, -1 if none yet."),
    Export("t_get_branch_index", _t_get_branch_index, (), INT, "Current branch index."),
    Export("t_exists", _t_exists, (), INT, "1 if the request has a transaction."),
    Export("t_lookup_cancel", _t_lookup_cancel, (), INT, "See t_check_trans: -1 here."),
    Export("t_lookup_request", _t_lookup_request, (), INT, "See t_check_trans: -1 here."),
    Export("t_release", _one, (), INT, "Accepted; the runtime frees transactions itself."),
    Export("t_clean", _one, (), INT, "Accepted; no effect."),
    Export("t_any_timeout", _t_any_timeout, (), INT, "1 if a branch timed out."),
    Export("t_any_replied", _t_any_replied, (), INT, "1 if a branch got a reply."),
), doc="Stateful forwarding and replies (Kamailio tm).")


# -- tmx ------------------------------------------------------------------------------------------
def _route_is(*kinds: str) -> Any:
    def fn(msg: Any) -> int:
        return 1 if msg.route in kinds else -1

    return fn


def _t_precheck_trans(msg: Any) -> int:
    # Kamailio: >0 when another process is already handling this request. Requests are handled
    # one at a time here and retransmissions are absorbed before the script, so never.
    return -1


def _t_drop(msg: Any) -> int:
    msg.drop()
    return 1


declare("tmx", (
    Export("t_precheck_trans", _t_precheck_trans, (), INT,
           "-1: a request reaching the script is never a retransmission being handled."),
    Export("t_is_request_route", _route_is("request"), (), INT, "1 in the request route."),
    Export("t_is_reply_route", _route_is("onreply", "reply"), (), INT,
           "1 in a reply route."),
    Export("t_is_failure_route", _route_is("failure"), (), INT, "1 in a failure route."),
    Export("t_is_branch_route", _route_is("branch"), (), INT, "1 in a branch route."),
    Export("t_flush_flags", _one, (), INT, "Accepted; flags live on the request already."),
    Export("t_drop", _t_drop, (), INT, "Mark the message to be dropped."),
), doc="Transaction extensions (Kamailio tmx).")
