"""make_response: which lines a response copies from its request, and in what form."""

from __future__ import annotations

import pytest

from siprouter.sip.build import make_response
from siprouter.sip.message import parse_message

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n"
    b"VIA: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK2\r\n"
    b"Max-Forwards: 70\r\n"
    b"f: \"A\" <sip:alice@example.com>;tag=a1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"i: c1@example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Timestamp: 54\r\n"
    b"Subject: folded\r\n"
    b" over two lines\r\n"
    b"Content-Length: 0\r\n\r\n"
)

# the request's Via and From lines, as a response copies them
VIAS_FROM = (
    b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n"
    b"VIA: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK2\r\n"
    b"f: \"A\" <sip:alice@example.com>;tag=a1\r\n"
)


def test_100_copies_the_lines_as_received_with_timestamp() -> None:
    req = parse_message(INVITE)
    out = make_response(req, 100, "Trying", server="sr")
    assert out == (
        b"SIP/2.0 100 Trying\r\n"
        + VIAS_FROM
        + b"To: <sip:bob@example.com>\r\n"
        b"i: c1@example.com\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Timestamp: 54\r\n"
        b"Server: sr\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    # and it parses back with the same values
    resp = parse_message(out)
    assert resp.status == 100
    assert resp.get_all("via") == req.get_all("via")
    assert resp.from_tag == "a1" and resp.to_tag is None and resp.call_id == "c1@example.com"


def test_an_edited_via_is_copied_as_edited() -> None:
    req = parse_message(INVITE)
    edited = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=5070;received=1.2.3.4"
    req.replace_first("via", edited)
    out = make_response(req, 100, "Trying")
    resp = parse_message(out)
    assert resp.get("via") == edited
    assert resp.get_all("via")[1] == "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK2"


@pytest.mark.parametrize("status", [180, 200, 404])
def test_a_final_or_provisional_with_a_tag_adds_it_and_drops_timestamp(status: int) -> None:
    req = parse_message(INVITE)
    resp = parse_message(make_response(req, status, to_tag="t9"))
    assert resp.status == status
    assert resp.to_tag == "t9"
    assert resp.get("timestamp") is None
    assert resp.get_all("via") == req.get_all("via")
    assert resp.cseq_num == 1 and resp.cseq_method == "INVITE"


def test_in_dialog_request_keeps_its_to_tag_and_no_timestamp() -> None:
    to = b"To: <sip:bob@example.com>"
    req = parse_message(INVITE.replace(to, to + b";tag=b2"))
    out = make_response(req, 200, to_tag="other", headers=[("X-A", "1\r\n2")], body=b"hi")
    resp = parse_message(out)
    assert resp.to_tag == "b2"
    assert resp.get("timestamp") is None
    assert resp.get("x-a") == "1  2"  # CR and LF in caller text become spaces
    assert resp.body == b"hi" and resp.get("content-length") == "2"
    assert b"To: <sip:bob@example.com>;tag=b2\r\n" in out


def test_a_tagged_response_copies_the_lines_as_received_but_the_to() -> None:
    req = parse_message(INVITE.replace(b"To: <sip:bob@example.com>", b"t: <sip:bob@example.com>"))
    out = make_response(req, 200, "OK", to_tag="t9")
    assert out == (
        b"SIP/2.0 200 OK\r\n"
        + VIAS_FROM
        + b"To: <sip:bob@example.com>;tag=t9\r\n"
        b"i: c1@example.com\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_tags_are_random_and_never_repeat_across_a_pool_refill() -> None:
    from siprouter.sip.build import new_tag, random_bytes

    tags = [new_tag() for _ in range(2000)]  # several refills of the 4 KiB pool
    assert len(set(tags)) == len(tags)
    assert all(len(t) == 12 and int(t, 16) >= 0 for t in tags)
    assert len(random_bytes(5000)) == 5000  # more than a pool holds
    assert random_bytes(8) != random_bytes(8)


def test_a_forked_child_draws_other_tags_than_its_parent() -> None:
    """Workers are forked: a pool copied into the child would hand out the parent's bytes."""
    import os

    from siprouter.sip.build import new_tag

    new_tag()  # the parent's pool is filled
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next tag, to the parent
        try:
            os.write(w, new_tag().encode())
        finally:
            os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert len(child) == 12 and child != new_tag()
