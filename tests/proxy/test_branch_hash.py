"""branch_hash (RFC 3261 §16.6 step 8): what a loop keeps unchanged gives the same hash, what
tells requests apart gives another."""

from __future__ import annotations

import pytest

from siprouter.proxy.routing import branch_hash
from siprouter.sip.message import parse_message

BASE = (
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice@example.com>;tag=a1\r\n"
    "To: <sip:bob@example.com>\r\n"
    "Call-ID: c1@example.com\r\n"
    "CSeq: 1 INVITE\r\n"
    "Content-Length: 0\r\n\r\n"
)
RURI = "sip:bob@example.com"


def h(text: str, ruri: str = RURI) -> str:
    return branch_hash(parse_message(text.encode()), ruri)


def test_what_a_loop_changes_leaves_the_hash() -> None:
    looped = BASE.replace("Max-Forwards: 70", "Max-Forwards: 69").replace(
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKx\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
    ).replace("CSeq: 1 INVITE\r\n", "CSeq: 1 INVITE\r\nRecord-Route: <sip:192.0.2.7;lr>\r\n")
    assert h(looped) == h(BASE)
    assert h(BASE).isdigit()


@pytest.mark.parametrize(("old", "new"), [
    (";tag=a1", ";tag=a2"),                                   # From tag
    ("To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1"),  # To tag
    ("c1@example.com", "c2@example.com"),                     # Call-ID
    ("CSeq: 1 INVITE", "CSeq: 2 INVITE"),                     # CSeq number
    ("CSeq: 1 INVITE", "CSeq: 1 INVITE\r\nProxy-Require: foo"),
    ("CSeq: 1 INVITE", "CSeq: 1 INVITE\r\nProxy-Authorization: Digest x=1"),
    ("CSeq: 1 INVITE", "CSeq: 1 INVITE\r\nRoute: <sip:192.0.2.5;lr>"),
])
def test_what_tells_requests_apart_changes_the_hash(old: str, new: str) -> None:
    assert h(BASE.replace(old, new)) != h(BASE)


def test_the_received_request_uri_counts_a_spiral_is_not_a_loop() -> None:
    assert h(BASE, "sip:bob@example.com") != h(BASE, "sip:bob@192.0.2.99")


def test_c_values_hash_reads_only_the_named_lines_in_order() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    names = frozenset(("from", "to"))
    frm, to = ["from", "x", "From: x", "From"], ["to", "y", "To: y", "To"]
    a = [frm, ["via", "v1", "Via: v1", "Via"], to]
    b = [frm, ["via", "v2", "Via: v2", "Via"], to]
    swapped = [to, frm]
    moved = [["from", "xy", "From: xy", "From"], ["to", "", "To:", "To"]]
    ha = scan.values_hash("r", "INVITE", a, names)
    assert ha.isdigit() and int(ha) < 2**60
    assert scan.values_hash("r", "INVITE", b, names) == ha  # an unnamed line does not count
    assert scan.values_hash("r", "INVITE", swapped, names) != ha
    assert scan.values_hash("r", "INVITE", moved, names) != ha  # values kept apart
    assert scan.values_hash("r2", "INVITE", a, names) != ha
    assert scan.values_hash("r", "\u20ac", a, names) is None  # beyond latin-1: Python's hash
    with pytest.raises(TypeError):
        scan.values_hash("r", "INVITE", a, ["from"])


def test_a_request_uri_beyond_latin1_still_hashes() -> None:
    assert h(BASE, "sip:\u20ac@example.com") == h(BASE, "sip:\u20ac@example.com")
    assert h(BASE, "sip:\u20ac@example.com") != h(BASE)
