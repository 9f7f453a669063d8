"""Client transactions: RFC 3261 §17.1 figures 5 and 6, RFC 6026, CANCEL (§9.1), Timer C."""

# mypy: disable-error-code="comparison-overlap"
# (mypy keeps a narrowed txn.state across calls that change it)
from __future__ import annotations

import itertools

import pytest
from txn_helpers import UAS, drive, kinds, request, request_bytes, response

from siprouter.sip.message import SipMessage, parse_message
from siprouter.transaction.layer import ClientTxn, Effect, State, TimerSettings, TransactionLayer

NO_C = TimerSettings(timer_c=None)


def new_invite(
    layer: TransactionLayer, reliable: bool = False, **kw: object
) -> tuple[SipMessage, ClientTxn, list[Effect]]:
    req = request("INVITE", **kw)
    txn, eff = layer.new_client(req, UAS, 0.0, reliable)
    return req, txn, eff


# -- INVITE client ---------------------------------------------------------------------------------


def test_invite_sent_at_creation_and_timer_a_doubles_until_timer_b() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, eff = new_invite(layer)
    assert eff == [("send", UAS, req.to_bytes(), txn)]
    assert txn.state is State.CALLING and txn.is_invite
    assert layer.next_deadline() == 0.5
    fired = drive(layer, 100.0)
    send_times = [t for t, e in fired if e[0] == "send"]
    # Timer A: T1, 2T1, 4T1 ... (no cap for INVITE) until Timer B = 64*T1 = 32 s
    assert send_times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [(t, e[0]) for t, e in fired if e[0] != "send"] == [
        (32.0, "timeout"),
        (32.0, "terminated"),
    ]
    assert txn.state is State.TERMINATED
    assert len(layer) == 0 and layer.next_deadline() is None


def test_invite_reliable_has_no_timer_a_but_timer_b() -> None:
    layer = TransactionLayer(NO_C)
    new_invite(layer, reliable=True)
    assert layer.next_deadline() == 32.0
    fired = drive(layer, 100.0)
    assert kinds([e for _, e in fired]) == ["timeout", "terminated"]


def test_provisional_stops_retransmissions_and_is_passed_up() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, _ = new_invite(layer)
    drive(layer, 0.6)
    r180 = response(req, 180)
    assert layer.match_response(r180) is txn
    eff = layer.client_receive(txn, r180, 0.7)
    assert eff == [("response", txn, r180)]
    assert txn.state is State.PROCEEDING and txn.last_status == 180
    assert layer.next_deadline() is None  # A and B cancelled; no Timer C here
    r183 = response(req, 183)
    assert layer.client_receive(txn, r183, 0.8) == [("response", txn, r183)]


def test_2xx_moves_to_accepted_passes_every_2xx_and_timer_m_ends() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, _ = new_invite(layer)
    layer.client_receive(txn, response(req, 180), 0.1)
    ok = response(req, 200)
    assert layer.client_receive(txn, ok, 1.0) == [("response", txn, ok)]
    assert txn.state is State.ACCEPTED
    ok_again = response(req, 200)
    fork_ok = response(req, 200, to_tag="other")
    assert layer.client_receive(txn, ok_again, 2.0) == [("response", txn, ok_again)]
    assert layer.client_receive(txn, fork_ok, 3.0) == [("response", txn, fork_ok)]
    # non-2xx and provisionals are ignored in Accepted
    assert layer.client_receive(txn, response(req, 486), 3.5) == []
    assert layer.client_receive(txn, response(req, 180), 3.6) == []
    assert layer.next_deadline() == 1.0 + 32.0  # Timer M = 64*T1
    assert drive(layer, 33.0 - 0.001) == []
    fired = drive(layer, 40.0)
    assert fired == [(33.0, ("terminated", txn))]
    assert layer.match_response(ok) is None


def test_2xx_from_calling_goes_straight_to_accepted() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, _ = new_invite(layer)
    eff = layer.client_receive(txn, response(req, 200), 0.2)
    assert kinds(eff) == ["response"] and txn.state is State.ACCEPTED
    assert layer.next_deadline() == pytest.approx(32.2)


def test_non_2xx_final_sends_ack_with_rfc_content() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, _ = new_invite(
        layer,
        routes=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"),
        extra_vias=("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-down",),
    )
    layer.client_receive(txn, response(req, 183), 0.1)
    busy = response(req, 486, to_tag="busytag")
    eff = layer.client_receive(txn, busy, 1.0)
    assert kinds(eff) == ["send", "response"]
    assert eff[1] == ("response", txn, busy)
    ack = eff[0][2]
    assert eff[0][1] == UAS
    assert ack == (
        b"ACK sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-abc1\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b"From: Alice <sip:alice@example.com>;tag=fromtag1\r\n"
        b"To: Bob <sip:bob@example.com>;tag=busytag\r\n"
        b"Call-ID: call-1@192.0.2.10\r\n"
        b"CSeq: 1 ACK\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    m = parse_message(ack)
    assert m.method == "ACK" and m.to_tag == "busytag" and m.via1.branch == "z9hG4bK-abc1"
    assert len(m.vias) == 1
    assert txn.state is State.COMPLETED
    # retransmitted final: absorbed, the same ACK re-sent, nothing for the TU
    again = layer.client_receive(txn, response(req, 486, to_tag="busytag"), 2.0)
    assert again == [("send", UAS, ack, txn)]
    # Timer D = 32 s on unreliable transports
    assert layer.next_deadline() == 33.0
    assert drive(layer, 40.0) == [(33.0, ("terminated", txn))]


def test_non_2xx_final_from_calling_builds_ack_from_bytes_request() -> None:
    layer = TransactionLayer(NO_C)
    data = request_bytes("INVITE", branch="z9hG4bK-bytes")
    txn, eff = layer.new_client(data, UAS, 0.0, False)
    assert eff[0][2] is data
    eff = layer.client_receive(txn, response(txn.request, 503), 0.3)
    assert kinds(eff) == ["send", "response"]
    assert b"branch=z9hG4bK-bytes" in eff[0][2] and eff[0][2].startswith(b"ACK ")
    assert drive(layer, 0.9) == []  # Timer A was cancelled


def test_reliable_final_terminates_at_once_timer_d_zero() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, _ = new_invite(layer, reliable=True, transport="TCP")
    eff = layer.client_receive(txn, response(req, 404), 0.3)
    assert kinds(eff) == ["send", "response", "terminated"]
    assert txn.state is State.TERMINATED and len(layer) == 0
    assert layer.next_deadline() is None


def test_invite_transport_error_in_calling_and_completed() -> None:
    layer = TransactionLayer(NO_C)
    _, txn, _ = new_invite(layer)
    assert layer.transport_error(txn, 0.1) == [("transport_error", txn), ("terminated", txn)]
    assert layer.next_deadline() is None
    req, txn2, _ = new_invite(layer, branch="z9hG4bK-2")
    layer.client_receive(txn2, response(req, 486), 0.2)
    assert txn2.transport_error(0.3) == [("transport_error", txn2), ("terminated", txn2)]
    # in Proceeding nothing is sent by the transaction: ignored
    req3, txn3, _ = new_invite(layer, branch="z9hG4bK-3")
    layer.client_receive(txn3, response(req3, 180), 0.2)
    assert txn3.transport_error(0.3) == [] and txn3.state is State.PROCEEDING


def test_ack_request_rejected_and_duplicate_branch_rejected() -> None:
    layer = TransactionLayer(NO_C)
    with pytest.raises(ValueError):
        layer.new_client(request("ACK"), UAS, 0.0, False)
    with pytest.raises(ValueError):
        layer.new_client(request("INVITE", branch=None), UAS, 0.0, False)
    layer.new_client(request("INVITE"), UAS, 0.0, False)
    with pytest.raises(ValueError):
        layer.new_client(request("INVITE"), UAS, 0.0, False)
    with pytest.raises(ValueError):
        layer.new_client(b"garbage", UAS, 0.0, False)


# -- non-INVITE client -----------------------------------------------------------------------------


def test_non_invite_timer_e_caps_at_t2_and_timer_f_times_out() -> None:
    layer = TransactionLayer(NO_C)
    req = request("OPTIONS")
    txn, eff = layer.new_client(req, UAS, 0.0, False)
    assert txn.state is State.TRYING and kinds(eff) == ["send"]
    fired = drive(layer, 100.0)
    send_times = [t for t, e in fired if e[0] == "send"]
    # E: 0.5, 1, 2, 4, 4, 4 ... (min(2E, T2)); F at 32 s
    assert send_times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(b - a == 4.0 for a, b in itertools.pairwise(send_times[3:]))
    assert send_times[-1] == 31.5
    assert [(t, e[0]) for t, e in fired if e[0] != "send"] == [
        (32.0, "timeout"),
        (32.0, "terminated"),
    ]


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    layer = TransactionLayer(NO_C)
    req = request("REGISTER")
    txn, _ = layer.new_client(req, UAS, 0.0, False)
    drive(layer, 0.6)  # one retransmission at 0.5, next E due at 1.5
    r100 = response(req, 100, to_tag=None)
    assert layer.client_receive(txn, r100, 0.7) == [("response", txn, r100)]
    assert txn.state is State.PROCEEDING
    fired = drive(layer, 12.0)
    assert [t for t, e in fired if e[0] == "send"] == [1.5, 5.5, 9.5]
    # another provisional is passed up too
    assert kinds(layer.client_receive(txn, response(req, 100, to_tag=None), 12.0)) == ["response"]
    ok = response(req, 200)
    assert layer.client_receive(txn, ok, 12.5) == [("response", txn, ok)]
    assert txn.state is State.COMPLETED
    # retransmitted final absorbed; Timer K = T4 = 5 s
    assert layer.client_receive(txn, response(req, 200), 13.0) == []
    assert drive(layer, 100.0) == [(17.5, ("terminated", txn))]


def test_non_invite_proceeding_timer_f() -> None:
    layer = TransactionLayer(NO_C)
    req = request("OPTIONS")
    txn, _ = layer.new_client(req, UAS, 0.0, False)
    layer.client_receive(txn, response(req, 100, to_tag=None), 0.1)
    fired = drive(layer, 100.0)
    assert [e[0] for t, e in fired if t == 32.0] == ["timeout", "terminated"]


def test_non_invite_reliable_no_timer_e_and_timer_k_zero() -> None:
    layer = TransactionLayer(NO_C)
    req = request("OPTIONS", transport="TCP")
    txn, _ = layer.new_client(req, UAS, 0.0, True)
    assert layer.next_deadline() == 32.0  # only F
    eff = layer.client_receive(txn, response(req, 404), 1.0)
    assert kinds(eff) == ["response", "terminated"]
    assert layer.next_deadline() is None


def test_non_invite_final_from_trying_and_transport_errors() -> None:
    layer = TransactionLayer(NO_C)
    req = request("OPTIONS")
    txn, _ = layer.new_client(req, UAS, 0.0, False)
    assert kinds(layer.client_receive(txn, response(req, 200), 0.1)) == ["response"]
    assert txn.state is State.COMPLETED
    assert txn.transport_error(0.2) == []  # nothing to do in Completed
    txn2, _ = layer.new_client(request("OPTIONS", branch="z9hG4bK-o2"), UAS, 0.0, False)
    assert txn2.transport_error(0.1) == [("transport_error", txn2), ("terminated", txn2)]
    req3 = request("OPTIONS", branch="z9hG4bK-o3")
    txn3, _ = layer.new_client(req3, UAS, 0.0, False)
    layer.client_receive(txn3, response(req3, 100, to_tag=None), 0.1)
    assert kinds(txn3.transport_error(0.2)) == ["transport_error", "terminated"]


# -- CANCEL ----------------------------------------------------------------------------------------


def test_cancel_after_provisional_is_sent_in_its_own_transaction() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, _ = new_invite(layer, routes=("<sip:p1.example.com;lr>",))
    layer.client_receive(txn, response(req, 180), 0.1)
    eff = layer.cancel(txn, 1.0, reason='SIP;cause=200;text="Call completed elsewhere"')
    assert len(eff) == 1 and eff[0][0] == "send" and eff[0][1] == UAS
    ctxn = txn.cancel_txn
    assert ctxn is not None and eff[0][3] is ctxn and ctxn.cancels is txn
    assert eff[0][2] == (
        b"CANCEL sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-abc1\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"From: Alice <sip:alice@example.com>;tag=fromtag1\r\n"
        b"To: Bob <sip:bob@example.com>\r\n"
        b"Call-ID: call-1@192.0.2.10\r\n"
        b"CSeq: 1 CANCEL\r\n"
        b'Reason: SIP;cause=200;text="Call completed elsewhere"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    assert ctxn.method == "CANCEL" and not ctxn.is_invite and ctxn.state is State.TRYING
    # a second cancel() is a no-op
    assert layer.cancel(txn, 1.1) == []
    # responses are matched by CSeq method: 200 to CANCEL vs 487 to INVITE
    ok_cancel = response(ctxn.request, 200)
    assert layer.match_response(ok_cancel) is ctxn
    r487 = response(req, 487)
    assert layer.match_response(r487) is txn
    assert kinds(layer.client_receive(ctxn, ok_cancel, 1.2)) == ["response"]
    assert kinds(layer.client_receive(txn, r487, 1.3)) == ["send", "response"]


def test_cancel_before_provisional_is_deferred_until_first_provisional() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, _ = new_invite(layer)
    assert layer.cancel(txn, 0.1) == []
    assert txn.cancel_txn is None
    assert layer.cancel(txn, 0.2) == []  # asked twice: still one CANCEL later
    eff = layer.client_receive(txn, response(req, 100, to_tag=None), 0.3)
    assert kinds(eff) == ["response", "send"]
    assert eff[1][2].startswith(b"CANCEL sip:bob@example.com SIP/2.0\r\n")
    assert txn.cancel_txn is not None and eff[1][3] is txn.cancel_txn
    assert kinds(layer.client_receive(txn, response(req, 180), 0.4)) == ["response"]


def test_cancel_deferred_then_final_first_sends_nothing() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, _ = new_invite(layer)
    layer.cancel(txn, 0.1)
    eff = layer.client_receive(txn, response(req, 486), 0.3)
    assert kinds(eff) == ["send", "response"] and eff[0][2].startswith(b"ACK ")
    assert txn.cancel_txn is None
    assert layer.cancel(txn, 0.4) == []
    # a 2xx first: nothing either
    req2, txn2, _ = new_invite(layer, branch="z9hG4bK-x2")
    layer.cancel(txn2, 0.1)
    assert kinds(layer.client_receive(txn2, response(req2, 200), 0.3)) == ["response"]
    assert layer.cancel(txn2, 0.4) == [] and txn2.cancel_txn is None


def test_cancel_of_non_invite_is_an_error() -> None:
    layer = TransactionLayer(NO_C)
    txn, _ = layer.new_client(request("OPTIONS"), UAS, 0.0, False)
    with pytest.raises(ValueError):
        layer.cancel(txn, 0.1)


def test_cancel_transaction_retransmits_like_non_invite() -> None:
    layer = TransactionLayer(NO_C)
    req, txn, _ = new_invite(layer)
    layer.client_receive(txn, response(req, 180), 0.0)
    eff = layer.cancel(txn, 0.0)
    cancel_bytes = eff[0][2]
    fired = drive(layer, 2.0)
    assert [(t, e[2]) for t, e in fired] == [(0.5, cancel_bytes), (1.5, cancel_bytes)]


# -- Timer C (proxy) -------------------------------------------------------------------------------


def test_timer_c_restarted_by_provisionals_then_cancels_and_waits() -> None:
    layer = TransactionLayer(TimerSettings(timer_c=180.0))
    req, txn, _ = new_invite(layer)
    layer.client_receive(txn, response(req, 100, to_tag=None), 0.1)  # 100 does not restart C
    assert layer.next_deadline() == 180.0
    layer.client_receive(txn, response(req, 180), 100.0)  # 180 restarts it
    assert layer.next_deadline() == 280.0
    fired = drive(layer, 280.0)
    assert [e[0] for _, e in fired] == ["timeout", "send"]
    assert fired[1][1][2] == txn.cancel_txn.data  # type: ignore[union-attr]
    assert txn.cancel_txn.data.startswith(b"CANCEL ")  # type: ignore[union-attr]
    assert txn.state is State.PROCEEDING and txn.cancel_txn is not None
    # a provisional after C fired does not restart it; the 487 completes normally
    layer.client_receive(txn, response(req, 180), 281.0)
    eff = layer.client_receive(txn, response(req, 487), 282.0)
    assert kinds(eff) == ["send", "response"] and txn.state is State.COMPLETED


def test_timer_c_grace_expires_without_final() -> None:
    layer = TransactionLayer(TimerSettings(timer_c=180.0))
    req, txn, _ = new_invite(layer, reliable=True, transport="TCP")
    layer.client_receive(txn, response(req, 183), 1.0)
    fired = drive(layer, 1000.0)
    invite_effects = [(t, e[0]) for t, e in fired if e[-1] is txn or e[1] is txn]
    assert invite_effects == [(181.0, "timeout"), (181.0 + 32.0, "terminated")]
    assert len(layer) == 0


def test_timer_c_shorter_than_b_in_calling_behaves_like_timeout() -> None:
    layer = TransactionLayer(TimerSettings(timer_c=10.0))
    _, txn, _ = new_invite(layer, reliable=True)
    assert drive(layer, 100.0) == [(10.0, ("timeout", txn)), (10.0, ("terminated", txn))]


def test_timer_c_after_manual_cancel_sends_no_second_cancel() -> None:
    layer = TransactionLayer(TimerSettings(timer_c=100.0))
    req, txn, _ = new_invite(layer, reliable=True)
    layer.client_receive(txn, response(req, 180), 1.0)
    first = layer.cancel(txn, 2.0)
    assert kinds(first) == ["send"]
    ctxn = txn.cancel_txn
    assert ctxn is not None
    layer.client_receive(ctxn, response(ctxn.request, 200), 2.1)
    fired = drive(layer, 101.0)
    assert fired == [(101.0, ("timeout", txn))]
    assert txn.cancel_txn is ctxn


def test_cancel_of_request_without_from_raises_value_error() -> None:
    layer = TransactionLayer(NO_C)
    data = request_bytes("INVITE").replace(
        b"From: Alice <sip:alice@example.com>;tag=fromtag1\r\n", b""
    )
    txn, _ = layer.new_client(data, UAS, 0.0, False)
    layer.client_receive(txn, response(txn.request, 180), 0.1)
    with pytest.raises(ValueError):
        layer.cancel(txn, 0.2)
    assert txn.cancel_txn is None and txn.state is State.PROCEEDING
