"""Message builders shared by the transaction tests."""

from __future__ import annotations

from siprouter.sip.message import SipMessage, parse_message
from siprouter.sip.types import Endpoint
from siprouter.transaction.layer import Effect, TransactionLayer

UAC = Endpoint("udp", "192.0.2.10", 5060)
UAS = Endpoint("udp", "198.51.100.20", 5060)


def request_bytes(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK-abc1",
    transport: str = "UDP",
    sent_by: str = "192.0.2.10:5060",
    ruri: str = "sip:bob@example.com",
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    from_tag: str = "fromtag1",
    call_id: str = "call-1@192.0.2.10",
    routes: tuple[str, ...] = (),
    extra_vias: tuple[str, ...] = (),
) -> bytes:
    via = f"SIP/2.0/{transport} {sent_by}"
    if branch is not None:
        via += f";branch={branch}"
    to = "Bob <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [f"{method} {ruri} SIP/2.0", f"Via: {via}"]
    lines += [f"Via: {v}" for v in extra_vias]
    lines += ["Max-Forwards: 70"]
    lines += [f"Route: {r}" for r in routes]
    lines += [
        f"From: Alice <sip:alice@example.com>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@192.0.2.10>",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def request(method: str = "INVITE", **kw: object) -> SipMessage:
    return parse_message(request_bytes(method, **kw))  # type: ignore[arg-type]


def response_bytes(
    req: SipMessage, status: int, reason: str = "", to_tag: str | None = "totag9"
) -> bytes:
    """A response to ``req``: its Via lines, From, To (+ ``to_tag``), Call-ID and CSeq."""
    reason = reason or {
        100: "Trying",
        180: "Ringing",
        183: "Session Progress",
        200: "OK",
        404: "Not Found",
        486: "Busy Here",
        487: "Request Terminated",
        408: "Request Timeout",
        503: "Service Unavailable",
    }.get(status, "X")
    to = req.get("to") or ""
    if to_tag is not None and ";tag=" not in to:
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in req.get_all("via")]
    lines += [
        f"From: {req.get('from')}",
        f"To: {to}",
        f"Call-ID: {req.call_id}",
        f"CSeq: {req.get('cseq')}",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def response(req: SipMessage, status: int, **kw: object) -> SipMessage:
    return parse_message(response_bytes(req, status, **kw))  # type: ignore[arg-type]


def kinds(effects: list[tuple[object, ...]]) -> list[object]:
    return [e[0] for e in effects]


def drive(layer: TransactionLayer, until: float, limit: int = 1000) -> list[tuple[float, Effect]]:
    """Advance a fake clock from deadline to deadline up to ``until``; (time, effect) pairs."""
    out: list[tuple[float, Effect]] = []
    for _ in range(limit):
        d = layer.next_deadline()
        if d is None or d > until:
            return out
        for e in layer.on_timer(d):
            out.append((d, e))
    raise AssertionError("timer loop did not settle")
