"""Server transactions: RFC 3261 §17.2 figures 7 and 8, RFC 6026 Accepted, RFC 4320."""

# mypy: disable-error-code="comparison-overlap"
# (mypy keeps a narrowed txn.state across calls that change it)
from __future__ import annotations

import pytest
from txn_helpers import UAC, drive, kinds, request, response, response_bytes

from siprouter.sip.message import SipMessage
from siprouter.transaction.layer import ServerTxn, State, TimerSettings, TransactionLayer
from siprouter.transaction.server import status_of


def invite_server(layer: TransactionLayer, **kw: object) -> tuple[SipMessage, ServerTxn]:
    req = request("INVITE", **kw)
    txn = layer.new_server(req, UAC, 0.0)
    return req, txn


# -- INVITE server ---------------------------------------------------------------------------------


def test_invite_retransmission_absorbed_with_last_provisional() -> None:
    layer = TransactionLayer()
    req, txn = invite_server(layer)
    assert txn.state is State.PROCEEDING and not txn.reliable and txn.is_invite
    # nothing sent yet: absorbed silently
    retrans = request("INVITE")
    assert layer.match_request(retrans) is txn
    assert layer.server_receive(txn, retrans, 0.1) == []
    trying = response_bytes(req, 100, to_tag=None)
    assert layer.server_respond(txn, trying, 0.1) == [("send", UAC, trying, txn)]
    assert layer.server_receive(txn, retrans, 0.2) == [("send", UAC, trying, txn)]
    ringing = response(req, 180)
    eff = layer.server_respond(txn, ringing, 0.3)
    assert eff == [("send", UAC, ringing.to_bytes(), txn)]
    assert txn.last_status == 180
    assert layer.server_receive(txn, retrans, 0.4) == [("send", UAC, ringing.to_bytes(), txn)]
    assert layer.next_deadline() is None


def test_2xx_moves_to_accepted_absorbs_invites_forwards_2xx_and_timer_l() -> None:
    layer = TransactionLayer()
    req, txn = invite_server(layer)
    ok = response_bytes(req, 200)
    assert layer.server_respond(txn, ok, 1.0) == [("send", UAC, ok, txn)]
    assert txn.state is State.ACCEPTED
    # INVITE retransmission: absorbed without re-sending the 2xx (RFC 6026 §8.7)
    assert layer.server_receive(txn, request("INVITE"), 2.0) == []
    # 2xx retransmissions forwarded by the TU are sent
    ok2 = response_bytes(req, 200, to_tag="fork2")
    assert layer.server_respond(txn, ok2, 3.0) == [("send", UAC, ok2, txn)]
    # non-2xx / provisional from the TU are dropped in Accepted
    assert layer.server_respond(txn, response_bytes(req, 486), 3.1) == []
    assert layer.server_respond(txn, response_bytes(req, 180), 3.2) == []
    # transport error: TU informed, transaction stays until Timer L
    assert layer.transport_error(txn, 3.3) == [("transport_error", txn)]
    assert txn.state is State.ACCEPTED
    assert layer.next_deadline() == 33.0  # L = 64*T1 after the 2xx
    assert drive(layer, 100.0) == [(33.0, ("terminated", txn))]
    assert layer.match_request(request("INVITE")) is None


def test_timer_l_also_runs_on_reliable_transport() -> None:
    layer = TransactionLayer()
    req, txn = invite_server(layer, transport="TCP")
    assert txn.reliable
    layer.server_respond(txn, response(req, 200), 0.0)
    assert layer.next_deadline() == 32.0


def test_non_2xx_timer_g_retransmits_and_timer_h_times_out() -> None:
    layer = TransactionLayer()
    req, txn = invite_server(layer)
    busy = response_bytes(req, 486)
    assert layer.server_respond(txn, busy, 0.0) == [("send", UAC, busy, txn)]
    assert txn.state is State.COMPLETED
    fired = drive(layer, 100.0)
    send_times = [t for t, e in fired if e[0] == "send"]
    assert all(e[2] == busy for _, e in fired if e[0] == "send")
    # G: T1, 2T1, 4T1, then capped at T2 = 4 s, until H = 64*T1
    assert send_times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert send_times[-1] == 31.5
    assert [(t, e[0]) for t, e in fired if e[0] != "send"] == [
        (32.0, "timeout"),
        (32.0, "terminated"),
    ]


def test_ack_moves_to_confirmed_then_timer_i() -> None:
    layer = TransactionLayer()
    req, txn = invite_server(layer)
    busy = response_bytes(req, 486)
    layer.server_respond(txn, busy, 0.0)
    # an INVITE retransmission in Completed re-sends the final
    assert layer.server_receive(txn, request("INVITE"), 0.2) == [("send", UAC, busy, txn)]
    # later finals from the TU are discarded
    assert layer.server_respond(txn, response_bytes(req, 500), 0.3) == []
    ack = request("ACK", to_tag="totag9", cseq_method="ACK")
    assert layer.match_request(ack) is txn
    assert layer.server_receive(txn, ack, 1.0) == []
    assert txn.state is State.CONFIRMED
    # ACK and INVITE retransmissions absorbed in Confirmed
    assert layer.server_receive(txn, ack, 1.1) == []
    assert layer.server_receive(txn, request("INVITE"), 1.2) == []
    assert layer.next_deadline() == 6.0  # I = T4
    assert drive(layer, 100.0) == [(6.0, ("terminated", txn))]


def test_reliable_invite_server_no_timer_g_and_timer_i_zero() -> None:
    layer = TransactionLayer()
    req, txn = invite_server(layer, transport="TCP")
    layer.server_respond(txn, response_bytes(req, 404), 0.0)
    assert layer.next_deadline() == 32.0  # H only
    ack = request("ACK", transport="TCP", to_tag="totag9")
    assert layer.server_receive(txn, ack, 0.5) == [("terminated", txn)]
    assert layer.next_deadline() is None and len(layer) == 0


def test_invite_server_transport_errors() -> None:
    layer = TransactionLayer()
    _, txn = invite_server(layer)
    assert txn.transport_error(0.1) == [("transport_error", txn), ("terminated", txn)]
    req, txn2 = invite_server(layer, branch="z9hG4bK-s2")
    layer.server_respond(txn2, response_bytes(req, 486), 0.0)
    assert kinds(txn2.transport_error(0.1)) == ["transport_error", "terminated"]
    assert layer.next_deadline() is None


def test_ack_in_accepted_is_passed_to_tu() -> None:
    layer = TransactionLayer()
    req, txn = invite_server(layer, branch=None)  # RFC 2543 peer
    layer.server_respond(txn, response_bytes(req, 200, to_tag="t2xx"), 0.0)
    ack = request("ACK", branch=None, to_tag="t2xx")
    assert layer.match_request(ack) is txn
    assert layer.server_receive(txn, ack, 0.1) == [("ack", txn, ack)]


def test_override_reliable_flag() -> None:
    layer = TransactionLayer()
    txn = layer.new_server(request("INVITE", transport="TCP"), UAC, 0.0, reliable=False)
    assert not txn.reliable


# -- non-INVITE server -----------------------------------------------------------------------------


def test_non_invite_trying_absorbs_then_final_and_timer_j() -> None:
    layer = TransactionLayer()
    req = request("REGISTER")
    txn = layer.new_server(req, UAC, 0.0)
    assert txn.state is State.TRYING
    assert layer.server_receive(txn, request("REGISTER"), 0.1) == []
    ok = response_bytes(req, 200)
    assert layer.server_respond(txn, ok, 0.2) == [("send", UAC, ok, txn)]
    assert txn.state is State.COMPLETED
    assert layer.server_receive(txn, request("REGISTER"), 0.3) == [("send", UAC, ok, txn)]
    assert layer.server_respond(txn, response_bytes(req, 500), 0.4) == []
    assert layer.next_deadline() == pytest.approx(32.2)  # J = 64*T1
    assert drive(layer, 100.0) == [(pytest.approx(32.2), ("terminated", txn))]


def test_non_invite_reliable_timer_j_zero() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", transport="TLS")
    txn = layer.new_server(req, UAC, 0.0)
    assert kinds(layer.server_respond(txn, response(req, 404), 0.1)) == ["send", "terminated"]
    assert layer.next_deadline() is None


def test_rfc4320_provisionals_for_non_invite() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    txn = layer.new_server(req, UAC, 10.0)
    # only 100 may be sent, and over UDP not before T2 has passed
    assert layer.server_respond(txn, response_bytes(req, 180), 20.0) == []
    assert layer.server_respond(txn, response_bytes(req, 100, to_tag=None), 13.9) == []
    assert txn.state is State.TRYING
    trying = response_bytes(req, 100, to_tag=None)
    assert layer.server_respond(txn, trying, 14.0) == [("send", UAC, trying, txn)]
    assert txn.state is State.PROCEEDING
    assert layer.server_receive(txn, request("OPTIONS"), 14.5) == [("send", UAC, trying, txn)]
    assert layer.server_respond(txn, trying, 15.0) == [("send", UAC, trying, txn)]
    assert kinds(txn.transport_error(15.1)) == ["transport_error", "terminated"]
    # over a reliable transport a 100 may go at once
    req2 = request("OPTIONS", transport="TCP", branch="z9hG4bK-tcp")
    txn2 = layer.new_server(req2, UAC, 0.0)
    assert kinds(layer.server_respond(txn2, response_bytes(req2, 100, to_tag=None), 0.0)) == [
        "send"
    ]
    ok = response(req2, 200)
    assert kinds(layer.server_respond(txn2, ok, 0.1)) == ["send", "terminated"]


def test_non_invite_completed_transport_error() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    txn = layer.new_server(req, UAC, 0.0)
    layer.server_respond(txn, response_bytes(req, 200), 0.0)
    assert kinds(layer.transport_error(txn, 0.1)) == ["transport_error", "terminated"]
    # Trying has no transport-error row
    txn2 = layer.new_server(request("BYE", branch="z9hG4bK-b2"), UAC, 0.0)
    assert txn2.transport_error(0.1) == [] and txn2.state is State.TRYING


# -- errors ----------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_error() -> None:
    layer = TransactionLayer()
    req, txn = invite_server(layer)
    with pytest.raises(ValueError):
        layer.new_server(request("INVITE"), UAC, 0.0)  # duplicate
    with pytest.raises(ValueError):
        layer.new_server(request("ACK"), UAC, 0.0)
    with pytest.raises(ValueError):
        layer.new_server(response(req, 200), UAC, 0.0)
    with pytest.raises(ValueError):
        layer.server_respond(txn, b"INVITE sip:x SIP/2.0\r\n\r\n", 0.0)
    with pytest.raises(ValueError):
        layer.server_respond(txn, request("INVITE"), 0.0)
    for bad in (b"", b"SIP/2.0 abc X\r\n", b"SIP/2.0 099 X\r\n", b"SIP/2.0 2000 X\r\n",
                b"SIP/2.0 2/0 X\r\n", b"SIP/2.0 200", b"SIP/2.1 200 OK\r\n", b"SIP/2.0 20: X"):
        with pytest.raises(ValueError):
            status_of(bad)
    assert status_of(b"SIP/2.0 603 Decline\r\n\r\n") == 603
    assert txn.state is State.PROCEEDING


@pytest.mark.parametrize(
    "kw",
    [
        {"t1": 0},
        {"t2": -1.0},
        {"t4": float("nan")},
        {"timer_d": float("inf")},
        {"timer_c": 0.0},
        {"t1": 5.0, "t2": 4.0},
    ],
)
def test_timer_settings_validation(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimerSettings(**kw)


def test_timer_settings_defaults() -> None:
    s = TimerSettings()
    assert (s.t1, s.t2, s.t4, s.timer_d, s.timer_c, s.timeout) == (0.5, 4.0, 5.0, 32.0, None, 32.0)
    assert TimerSettings(timer_c=200.0).timer_c == 200.0
