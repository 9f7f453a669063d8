"""Proxy behaviour (RFC 3261 §16) through the runtime core on a fake transport and clock."""

from __future__ import annotations

from typing import Any

from siprouter.sip.build import make_response
from siprouter.sip.message import SipMessage
from siprouter.sip.types import Endpoint
from siprouter.testing.harness import Harness, script_from

CALLER = ("udp", "127.0.0.1", 5070)


def invite(ruri: str = "sip:bob@10.0.0.2:5080", branch: str = "z9hG4bKc1", extra: str = "",
           method: str = "INVITE", cseq: int = 1, to_tag: str = "") -> str:
    tt = f";tag={to_tag}" if to_tag else ""
    return (
        f"{method} {ruri} SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\n"
        "Max-Forwards: 70\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\n"
        f"To: <sip:bob@127.0.0.1>{tt}\n"
        "Call-ID: call-1@test\n"
        f"CSeq: {cseq} {method}\n"
        "Contact: <sip:alice@127.0.0.1:5070>\n"
        f"{extra}"
        "Content-Length: 0\n\n"
    )


def respond(h: Harness, req: SipMessage, status: int, to_tag: str = "b1",
            src: tuple[str, str, int] = ("udp", "10.0.0.2", 5080), **kw: Any) -> None:
    h.receive(make_response(req, status, to_tag=to_tag, **kw), src=src)


def relay_all(req: Any) -> None:
    if req.process_maxfwd(10) == -1:
        req.reply(483, "Too Many Hops")
        return
    if req.has_to_tag and req.loose_route() > 0:
        req.relay()
        return
    req.record_route()
    req.relay()


def only(sent: list[tuple[Endpoint, SipMessage]], pred: Any) -> list[tuple[Endpoint, SipMessage]]:
    return [x for x in sent if pred(x[1])]


def test_invite_relayed_with_via_rr_and_100() -> None:
    h = Harness(script_from(relay_all))
    h.receive(invite())
    sent = h.take()
    trying = only(sent, lambda m: not m.is_request)
    assert [m.status for _, m in trying] == [100]
    assert trying[0][0] == Endpoint("udp", "127.0.0.1", 5070)
    fwd = only(sent, lambda m: m.is_request)
    assert len(fwd) == 1
    dest, m = fwd[0]
    assert dest == Endpoint("udp", "10.0.0.2", 5080)
    assert m.via1.sent_by() == "127.0.0.1:5060" and m.via1.branch.startswith("z9hG4bK")
    # the line as written: the listener's Via start (remembered) and this branch
    assert m.get_all("via")[0] == f"SIP/2.0/UDP 127.0.0.1:5060;branch={m.via1.branch}"
    assert len(m.vias) == 2
    assert m.get("max-forwards") == "69"
    assert m.get("record-route") == "<sip:127.0.0.1:5060;lr;ftag=a1>"


def test_responses_go_upstream_and_ack_for_2xx_is_routed() -> None:
    h = Harness(script_from(relay_all))
    h.receive(invite())
    fwd = only(h.take(), lambda m: m.is_request)[0][1]
    respond(h, fwd, 100)
    assert h.take() == []  # 100 from downstream is absorbed
    respond(h, fwd, 180)
    respond(h, fwd, 200, headers=[("Record-Route", fwd.get("record-route") or "")])
    up = h.take()
    assert [m.status for _, m in up] == [180, 200]
    assert all(d == Endpoint("udp", "127.0.0.1", 5070) for d, _ in up)
    assert len(up[1][1].vias) == 1  # our Via was removed
    # retransmitted 200 still goes upstream (RFC 6026)
    respond(h, fwd, 200)
    assert [m.status for _, m in h.take()] == [200]


def test_answered_branch_leaves_no_fr_inv_timer_behind() -> None:
    """The 180 arms the branch's fr_inv timer (120 s); the 200 stops it, and the proxy's timer
    wheel lets go of the branch at once rather than holding it, its transaction and its
    messages until the 120 s are over."""
    h = Harness(script_from(relay_all))
    h.receive(invite())
    fwd = only(h.take(), lambda m: m.is_request)[0][1]
    proxy = h.core.proxy
    respond(h, fwd, 180)
    assert len(proxy._timers) == 1
    assert proxy.next_deadline() is not None
    respond(h, fwd, 200)
    assert len(proxy._timers) == 0 and proxy.next_deadline() is None


def test_cancel_before_answer_ends_with_487() -> None:
    h = Harness(script_from(relay_all))
    h.receive(invite())
    fwd = only(h.take(), lambda m: m.is_request)[0][1]
    respond(h, fwd, 180)
    h.take()
    h.receive(invite(method="CANCEL").replace("Contact: <sip:alice@127.0.0.1:5070>\n", ""))
    sent = h.take()
    ok = only(sent, lambda m: not m.is_request)
    assert [(m.status, m.cseq_method) for _, m in ok] == [(200, "CANCEL")]
    cancels = only(sent, lambda m: m.is_request and m.method == "CANCEL")
    assert len(cancels) == 1 and cancels[0][1].via1.branch == fwd.via1.branch
    respond(h, fwd, 487)
    up = h.take()
    assert [m.status for _, m in up if not m.is_request] == [487]
    assert [m.method for _, m in up if m.is_request] == ["ACK"]  # hop-by-hop ACK downstream


def test_ringing_too_long_is_cancelled_by_fr_inv_with_408() -> None:
    h = Harness(script_from(relay_all))
    h.receive(invite())
    fwd = only(h.take(), lambda m: m.is_request)[0][1]
    respond(h, fwd, 180)
    assert [m.status for _, m in h.take()] == [180]
    h.advance(119)
    assert h.take() == [] and len(h.core.proxy._timers) == 1
    h.advance(2)  # fr_inv_timeout: 120 s after the 180
    sent = h.take()
    # the CANCEL (and its retransmission: nobody answers it here), and the caller gets 408
    assert {m.method for _, m in sent if m.is_request} == {"CANCEL"}
    assert {m.status for _, m in sent if not m.is_request} == {408}  # and Timer G resends
    respond(h, fwd, 487)  # the late answer to the CANCELled INVITE goes nowhere
    assert [m for _, m in h.take() if not m.is_request] == []
    assert len(h.core.proxy._timers) == 0


def test_timeout_gives_408_and_failure_route_tries_next() -> None:
    tried: list[str] = []

    def rr(req: Any) -> None:
        req.on_failure("next_dest")
        req.relay()

    def next_dest(req: Any) -> None:
        tried.append(req.ruri)
        req.relay("sip:10.0.0.3:5080")

    h = Harness(script_from(rr, next_dest=next_dest))
    h.receive(invite())
    h.take()
    h.advance(40)  # Timer B (64*T1 = 32 s)
    sent = h.take()
    assert tried == ["sip:bob@10.0.0.2:5080"]
    second = [m for d, m in sent if m.is_request and d.host == "10.0.0.3"]
    assert second and second[0].method == "INVITE"
    respond(h, second[0], 486, src=("udp", "10.0.0.3", 5080))
    assert [m.status for _, m in h.take() if not m.is_request] == [486]


def test_parallel_fork_best_response_and_cancel_on_2xx() -> None:
    def fork(req: Any) -> None:
        req.append_branch("sip:bob@10.0.0.3:5080")
        req.relay()

    h = Harness(script_from(fork))
    h.receive(invite())
    fwd = [(d, m) for d, m in h.take() if m.is_request]
    assert {d.host for d, _ in fwd} == {"10.0.0.2", "10.0.0.3"}
    a = next(m for d, m in fwd if d.host == "10.0.0.2")
    b = next(m for d, m in fwd if d.host == "10.0.0.3")
    assert a.via1.branch != b.via1.branch
    respond(h, a, 180)
    respond(h, b, 180, to_tag="b2", src=("udp", "10.0.0.3", 5080))
    h.take()
    respond(h, b, 200, to_tag="b2", src=("udp", "10.0.0.3", 5080))
    sent = h.take()
    assert [m.status for _, m in sent if not m.is_request] == [200]
    cancel = [(d, m) for d, m in sent if m.is_request and m.method == "CANCEL"]
    assert len(cancel) == 1 and cancel[0][0].host == "10.0.0.2"


def test_best_response_prefers_6xx_then_lowest_class() -> None:
    def fork(req: Any) -> None:
        req.append_branch("sip:bob@10.0.0.3:5080")
        req.relay()

    h = Harness(script_from(fork))
    h.receive(invite())
    fwd = [(d, m) for d, m in h.take() if m.is_request]
    a = next(m for d, m in fwd if d.host == "10.0.0.2")
    b = next(m for d, m in fwd if d.host == "10.0.0.3")
    respond(h, a, 404)
    assert [m.status for _, m in h.take() if not m.is_request] == []
    respond(h, b, 503, to_tag="b2", src=("udp", "10.0.0.3", 5080))
    assert [m.status for _, m in h.take() if not m.is_request] == [404]


def test_max_forwards_zero_gets_483() -> None:
    h = Harness(script_from(relay_all))
    h.receive(invite().replace("Max-Forwards: 70", "Max-Forwards: 0"))
    assert [m.status for _, m in h.take()] == [483]


def test_loop_detected_482() -> None:
    h = Harness(script_from(relay_all))
    # the request comes back to us unchanged: forward it to ourselves
    h.receive(invite(ruri="sip:bob@127.0.0.1:5060"))
    out = [m for _, m in h.take() if m.is_request]
    assert out
    h.receive(out[0].to_bytes(), src=("udp", "127.0.0.1", 5060))
    statuses = [m.status for _, m in h.take() if not m.is_request]
    assert 482 in statuses


def test_in_dialog_loose_route_and_double_rr_on_transport_change() -> None:
    h = Harness(script_from(relay_all))
    h.receive(invite(ruri="sip:bob@10.0.0.2:5080;transport=tcp"))
    fwd = [(d, m) for d, m in h.take() if m.is_request]
    d, m = fwd[0]
    assert d.proto == "tcp"
    assert m.values("record-route") == [
        "<sip:127.0.0.1:5060;transport=tcp;lr;r2=on;ftag=a1>",
        "<sip:127.0.0.1:5060;lr;r2=on;ftag=a1>",
    ]
    assert m.via1.transport == "TCP"
    # BYE from the caller with the route set: both our entries are consumed
    bye = invite(method="BYE", cseq=2, to_tag="b1", ruri="sip:bob@10.0.0.2:5080;transport=tcp",
                 extra="Route: <sip:127.0.0.1:5060;lr;r2=on;ftag=a1>,"
                       " <sip:127.0.0.1:5060;transport=tcp;lr;r2=on;ftag=a1>\n")
    h.receive(bye.replace("z9hG4bKc1", "z9hG4bKc2"))
    out = [(d, m) for d, m in h.take() if m.is_request]
    assert out[0][0] == Endpoint("tcp", "10.0.0.2", 5080)
    assert not out[0][1].has("route")


def test_strict_router_interworking() -> None:
    h = Harness(script_from(relay_all))
    # a strict router put our RR URI into the R-URI and the real target at the end of Route
    req = invite(method="BYE", to_tag="b1", ruri="sip:127.0.0.1:5060;lr",
                 extra="Route: <sip:bob@10.0.0.2:5080>\n")
    h.receive(req)
    out = [(d, m) for d, m in h.take() if m.is_request]
    assert out[0][0] == Endpoint("udp", "10.0.0.2", 5080)
    assert out[0][1].ruri == "sip:bob@10.0.0.2:5080"


def test_script_exception_answers_500_and_server_carries_on() -> None:
    calls = []

    def broken(req: Any) -> None:
        calls.append(1)
        raise RuntimeError("boom")

    h = Harness(script_from(broken))
    h.receive(invite())
    assert [m.status for _, m in h.take()] == [500]
    h.receive(invite(branch="z9hG4bKc9", cseq=2))
    assert [m.status for _, m in h.take()] == [500]
    assert len(calls) == 2


def test_transport_error_gives_503() -> None:
    h = Harness(script_from(relay_all))
    h.transport.fail.add(("10.0.0.2", 5080))
    h.receive(invite(ruri="sip:bob@10.0.0.2:5080;transport=tcp"))
    statuses = [m.status for _, m in h.take() if not m.is_request]
    assert statuses == [100, 503]


def test_retransmitted_invite_absorbed() -> None:
    h = Harness(script_from(relay_all))
    h.receive(invite())
    h.take()
    h.receive(invite())
    sent = h.take()
    assert [m.status for _, m in sent] == [100]  # the last response is re-sent, no new relay
