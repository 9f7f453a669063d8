"""Matching: RFC 3261 §17.1.3, §17.2.3 (+ RFC 2543 fallback), §9.2 CANCEL targets."""

from __future__ import annotations

from txn_helpers import UAC, UAS, request, response, response_bytes

from siprouter.sip.message import parse_message
from siprouter.transaction.layer import TransactionLayer


def test_rfc3261_request_matching_branch_sent_by_method() -> None:
    layer = TransactionLayer()
    inv = layer.new_server(request("INVITE"), UAC, 0.0)
    assert layer.match_request(request("INVITE")) is inv
    # ACK matches the INVITE transaction
    assert layer.match_request(request("ACK", cseq_method="ACK")) is inv
    # other sent-by, other branch, other method: no match
    assert layer.match_request(request("INVITE", sent_by="192.0.2.99:5060")) is None
    assert layer.match_request(request("INVITE", branch="z9hG4bK-other")) is None
    assert layer.match_request(request("BYE")) is None
    # a CANCEL has the INVITE's branch: not its own transaction yet, but targets the INVITE
    cancel = request("CANCEL")
    assert layer.match_request(cancel) is None
    assert layer.match_cancel_target(cancel) is inv
    ctxn = layer.new_server(cancel, UAC, 0.0)
    assert layer.match_request(request("CANCEL")) is ctxn
    assert layer.match_cancel_target(request("CANCEL", branch="z9hG4bK-nope")) is None
    assert len(layer) == 2


def test_ack_for_2xx_with_new_branch_matches_nothing() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    inv = layer.new_server(req, UAC, 0.0)
    layer.server_respond(inv, response(req, 200), 0.0)
    assert layer.match_request(request("ACK", branch="z9hG4bK-e2e", to_tag="totag9")) is None


def test_rfc2543_fallback_matching() -> None:
    layer = TransactionLayer()
    req = request("INVITE", branch=None)
    inv = layer.new_server(req, UAC, 0.0)
    assert inv.branch is None
    # retransmission: same Request-URI, tags, Call-ID, CSeq, top Via
    assert layer.match_request(request("INVITE", branch=None)) is inv
    # a non-cookie branch is RFC 2543 too
    assert layer.match_request(request("INVITE", branch="1234")) is None
    # differing To tag / Call-ID / CSeq / Request-URI / From tag / Via: no match
    assert layer.match_request(request("INVITE", branch=None, to_tag="x")) is None
    assert layer.match_request(request("INVITE", branch=None, call_id="other")) is None
    assert layer.match_request(request("INVITE", branch=None, cseq=2)) is None
    assert layer.match_request(request("INVITE", branch=None, ruri="sip:carol@example.com")) is None
    assert layer.match_request(request("INVITE", branch=None, from_tag="ft2")) is None
    assert layer.match_request(request("INVITE", branch=None, sent_by="192.0.2.10:5062")) is None
    # ACK: before any final no To tag can match
    ack = request("ACK", branch=None, to_tag="totag9")
    assert layer.match_request(ack) is None
    layer.server_respond(inv, response_bytes(req, 486, to_tag="totag9"), 0.1)
    assert layer.match_request(ack) is inv
    assert layer.match_request(request("ACK", branch=None, to_tag="wrong")) is None
    assert layer.server_receive(inv, ack, 0.2) == []
    # CANCEL target: INVITE with the CANCEL's To tag (none)
    assert layer.match_cancel_target(request("CANCEL", branch=None)) is inv
    assert layer.match_cancel_target(request("CANCEL", branch=None, to_tag="q")) is None
    assert layer.match_cancel_target(request("CANCEL", branch=None, cseq=9)) is None
    # non-INVITE with RFC 2543 matching
    bye = layer.new_server(request("BYE", branch=None, cseq=2, to_tag="t"), UAC, 0.0)
    assert layer.match_request(request("BYE", branch=None, cseq=2, to_tag="t")) is bye


def test_rfc2543_ack_with_unparseable_last_response() -> None:
    layer = TransactionLayer()
    req = request("INVITE", branch=None)
    inv = layer.new_server(req, UAC, 0.0)
    inv.last_response = b"not a message"
    inv._resp_to_tag = False
    assert inv.response_to_tag() is None
    assert layer.match_request(request("ACK", branch=None, to_tag="totag9")) is None


def test_response_matching_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    req = request("INVITE", branch="z9hG4bK-c1")
    txn, _ = layer.new_client(req, UAS, 0.0, False)
    assert layer.match_response(response(req, 180)) is txn
    # same branch, other CSeq method
    other = parse_message(response_bytes(req, 200).replace(b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL"))
    assert layer.match_response(other) is None
    # other branch
    req2 = request("INVITE", branch="z9hG4bK-c2")
    assert layer.match_response(response(req2, 180)) is None
    # malformed: no Via, no branch, broken CSeq -> None, never an exception
    no_via = parse_message(
        b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
    )
    assert layer.match_response(no_via) is None
    no_branch = parse_message(response_bytes(request("INVITE", branch=None), 200))
    assert layer.match_response(no_branch) is None
    bad_cseq = parse_message(response_bytes(req, 200).replace(b"CSeq: 1 INVITE", b"CSeq: x"))
    assert layer.match_response(bad_cseq) is None


def test_malformed_requests_match_nothing() -> None:
    layer = TransactionLayer()
    layer.new_server(request("INVITE"), UAC, 0.0)
    no_via = parse_message(
        b"INVITE sip:b@example.com SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nContent-Length: 0\r\n\r\n"
    )
    assert layer.match_request(no_via) is None
    assert layer.match_cancel_target(no_via) is None
    bad_cseq = parse_message(request_bytes_with_cseq("CSeq: nope"))
    assert layer.match_request(bad_cseq) is None


def request_bytes_with_cseq(line: str) -> bytes:
    from txn_helpers import request_bytes

    return request_bytes("INVITE", branch=None).replace(b"CSeq: 1 INVITE", line.encode())


def test_terminated_transactions_leave_the_indexes() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", transport="TCP")
    txn = layer.new_server(req, UAC, 0.0)
    layer.server_respond(txn, response(req, 200), 0.0)
    assert layer.match_request(request("OPTIONS", transport="TCP")) is None
    # the same request may now start a new transaction
    assert layer.new_server(request("OPTIONS", transport="TCP"), UAC, 1.0) is not txn
    ctxn, _ = layer.new_client(request("OPTIONS", branch="z9hG4bK-k"), UAS, 0.0, True)
    layer.client_receive(ctxn, response(ctxn.request, 200), 0.1)
    assert layer.match_response(response(ctxn.request, 200)) is None
    assert len(layer) == 1


def test_context_is_free_for_the_tu() -> None:
    layer = TransactionLayer()
    txn = layer.new_server(request("INVITE"), UAC, 0.0)
    assert txn.context is None
    txn.context = {"anything": 1}
    assert layer.match_request(request("INVITE")).context == {"anything": 1}  # type: ignore[union-attr]
    assert "INVITE" in repr(txn) and "Proceeding" in repr(txn)
