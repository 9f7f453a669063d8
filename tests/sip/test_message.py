"""Unit tests of the lazy parser and the edit-preserving serializer."""

from __future__ import annotations

import pytest

from siprouter.sip.message import ParseError, canonical_name, display_name, parse_message

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b'From: "Alice" <sip:alice@example.com;tag=uri>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Subject  :  folded\r\n   value\r\n"
    b"Contact: <sip:alice@192.0.2.1>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_parse_request_basics() -> None:
    m = parse_message(INVITE)
    assert m.is_request and m.method == "INVITE"
    assert m.ruri == "sip:bob@example.com"
    assert m.call_id == "a84b4c76e66710@pc33.example.com"
    assert (m.cseq_num, m.cseq_method) == (314159, "INVITE")
    assert m.from_tag == "1928301774"
    assert m.to_tag is None
    assert m.get("subject") == "folded value"
    assert m.get("l") == "4"
    assert m.body == b"v=0\n"
    assert m.to_bytes() is m.raw


def test_untouched_lines_keep_their_bytes() -> None:
    m = parse_message(INVITE)
    m.insert_top("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKnew")
    m.set("Max-Forwards", "69")
    out = m.to_bytes()
    assert out.startswith(b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;")
    assert b"Subject  :  folded\r\n   value\r\n" in out
    assert b"Max-Forwards: 69\r\n" in out
    assert out.endswith(b"Content-Length: 4\r\n\r\nv=0\n")
    again = parse_message(out)
    assert again.get_all("via")[1] == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds"


def test_ruri_and_body_edits() -> None:
    m = parse_message(INVITE)
    m.ruri = "sip:bob@10.0.0.2:5070"
    m.body = b"hello"
    again = parse_message(m.to_bytes())
    assert again.ruri == "sip:bob@10.0.0.2:5070"
    assert again.body == b"hello" and again.get("content-length") == "5"


def test_remove_and_first_value() -> None:
    m = parse_message(
        b"OPTIONS sip:a@b SIP/2.0\r\nRoute: <sip:p1;lr>, <sip:p2;lr>\r\nRoute: <sip:p3>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert m.values("route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3>"]
    assert m.remove_first_value("Route") == "<sip:p1;lr>"
    assert m.values("route") == ["<sip:p2;lr>", "<sip:p3>"]
    assert m.remove("route") == 2 and not m.has("route")


def test_response() -> None:
    m = parse_message(
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"To: <sip:b@h>;tag=x\r\nContent-Length: 0\r\n\r\n"
    )
    assert not m.is_request and m.status == 180 and m.reason == "Ringing"
    assert m.to_tag == "x"


def test_datagram_extra_bytes_discarded_and_missing_cl() -> None:
    m = parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nhiEXTRA")
    assert m.body == b"hi" and m.raw.endswith(b"\r\n\r\nhi")
    m = parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nall of it")
    assert m.body == b"all of it"
    with pytest.raises(ParseError) as e:
        parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n", stream=True)
    assert e.value.status == 400


@pytest.mark.parametrize(
    "data,status",
    [
        (b"INVITE  sip:a@b SIP/2.0\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0 \r\n\r\n", 400),
        (b"INVITE <sip:a@b> SIP/2.0\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/7.0\r\n\r\n", 505),
        (b"INVITE sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99\r\n\r\nshort", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", 400),
        (b"SIP/2.0 4294967301 Big\r\n\r\n", 0),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: x", 400),
        (b"", 0),
        (b"\r\n\r\n", 0),
    ],
)
def test_unframeable(data: bytes, status: int) -> None:
    with pytest.raises(ParseError) as e:
        parse_message(data)
    assert e.value.status == status


def test_names() -> None:
    assert canonical_name("V") == "via" and canonical_name("Call-Id") == "call-id"
    assert display_name("i") == "Call-ID" and display_name("x-custom-thing") == "X-Custom-Thing"


def test_utf8_values_round_trip() -> None:
    raw = 'MESSAGE sip:a@b SIP/2.0\r\nFrom: "Zoë" <sip:z@b>;tag=1\r\n\r\n'.encode()
    m = parse_message(raw)
    assert m.get("from") == '"Zoë" <sip:z@b>;tag=1'
    m.add("Subject", "café")
    assert "Subject: café\r\n".encode() in m.to_bytes()


def test_non_ascii_value_added_to_an_ascii_message_reads_back() -> None:
    """A message parsed from ASCII bytes reads its values without a check per value; a value
    added later that is not ASCII must still read back as the caller wrote it, in copies and
    after compact() too."""
    m = parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nFrom: <sip:z@b>;tag=1\r\n\r\n")
    assert m.get("from") == "<sip:z@b>;tag=1"
    m.add("Subject", "café")
    m.insert_top("X-Name", '"Zoë" <sip:z@b>')
    for msg in (m, m.copy()):
        assert msg.get("subject") == "café"
        assert msg.get_all("x-name") == ['"Zoë" <sip:z@b>']
        assert {("X-Name", '"Zoë" <sip:z@b>'), ("Subject", "café")} <= set(msg.headers())
    m.compact()
    assert m.get("subject") == "café" and m.get_all("x-name") == ['"Zoë" <sip:z@b>']


@pytest.mark.parametrize("folded", [False, True])
def test_utf8_value_ending_in_a0_byte_is_kept_whole(folded: bool) -> None:
    """"à" is C3 A0 in UTF-8: the trailing A0 byte is not whitespace to trim, on either
    header-line path (folding takes the line-by-line one)."""
    fold = "\r\n x" if folded else ""
    raw = f"MESSAGE sip:a@b SIP/2.0\r\nSubject: voilà{fold}\r\nX-B: \u00e0 \r\n\r\n".encode()
    m = parse_message(raw)
    assert m.get("subject") == ("voilà x" if folded else "voilà")
    assert m.get("x-b") == "à"


def test_compact_keeps_content_and_edits() -> None:
    m = parse_message(INVITE)
    m.insert_top("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKnew")
    m.set("Max-Forwards", "69")
    before = m.to_bytes()
    m.compact()
    assert m.to_bytes() == before  # edits were applied to the bytes first
    assert m.get("max-forwards") == "69"  # the index comes back from the bytes
    assert m.via1.branch == "z9hG4bKnew" and len(m.vias) == 2
    assert m.from_tag == "1928301774" and m.get("subject") == "folded value"
    m.add("X-After", "1")  # and the message can still be edited
    assert parse_message(m.to_bytes()).get("x-after") == "1"
    assert m.copy().to_bytes() == m.to_bytes()


@pytest.mark.parametrize("edit", [
    lambda m: m.remove_first_value("via"),
    lambda m: m.remove_first_value("x-two"),
    lambda m: m.replace_first("Max-Forwards", "1"),
    lambda m: m.replace_first_wire("to", "<sip:x@y>"),
    lambda m: m.set("CSeq", "1 INVITE"),
    lambda m: m.insert_top("Via", "SIP/2.0/UDP h;branch=z9hG4bKc"),
    lambda m: m.remove("contact"),
    lambda m: m.compact(),
])
def test_a_copy_and_its_original_do_not_share_edits(edit: object) -> None:
    """copy() shares the header entries with its original: an edit of either must leave the
    other as it was, both ways round."""
    data = INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nX-Two: a, b\r\n")
    for edited_first in (True, False):
        m = parse_message(data)
        m.replace_first("X-Other", "1")
        before = m.to_bytes()
        c = m.copy()
        target, other = (c, m) if edited_first else (m, c)
        edit(target)  # type: ignore[operator]
        assert other.to_bytes() == before
        assert parse_message(target.to_bytes()).header_items() == target.header_items()


def test_mark_sent_uses_the_bytes_given() -> None:
    m = parse_message(INVITE)
    m.set("Max-Forwards", "5")
    data = m.to_bytes()
    m.mark_sent(data)
    assert m.raw is data and m.to_bytes() is data and m.get("max-forwards") == "5"


RESP = (
    "SIP/2.0 180 Ringing\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy\r\n"
    "v: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKuac;received=10.0.0.2\r\n"
    "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
    "Content-Length: 4\r\n\r\nbody"
)


def _rebuilt(data: bytes) -> bytes:
    """What to_bytes() gives for the message after popping its top Via, written out in full
    (an extra edit and its undo force the full serialization)."""
    m = parse_message(data)
    m.remove_first_value("via")
    m.add("X-Force", "1")
    m.remove_first_value("x-force")
    return m.to_bytes()


@pytest.mark.parametrize("data", [
    RESP.encode(),
    RESP.encode() + b"trailing bytes beyond Content-Length",
    RESP.replace("\r\n", "\n").encode(),  # bare LF: no cut, the full serialization
    RESP.replace("CSeq: 1 INVITE\r\n", "CSeq: 1 INVITE\n").encode(),  # one bare LF after it
    RESP.replace("branch=z9hG4bKproxy", "branch=z9hG4bKproxy\r\n ;x=folded").encode(),
    RESP.replace("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy\r\n",
                 "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy, SIP/2.0/TCP h\r\n"
                 ).encode(),  # two values on the line: only the first goes
    # the Via lines after others, written as received or not
    RESP.replace("SIP/2.0 180 Ringing\r\n",
                 "SIP/2.0 180 Ringing\r\nFrom:  <sip:a@x>;tag=1\r\nX-A: 1\r\n").replace(
                 "From: <sip:a@x>;tag=1\r\n", "").encode(),
    # the same line in the body stays there
    RESP.replace("Content-Length: 4\r\n\r\nbody",
                 "Content-Length: 52\r\n\r\n"
                 "\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy\r\n").encode(),
])
def test_popping_the_top_via_cuts_it_out_of_the_raw_bytes(data: bytes) -> None:
    m = parse_message(data)
    popped = m.remove_first_value("via")
    assert popped is not None and popped.startswith("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy")
    # the first value of a line went and nothing else was edited: the splice is remembered
    # (not where a header line ends with a bare LF: the splice would keep it as it is)
    head = data.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in data else data
    assert (m._cut_at >= 0) == (head.count(b"\n") == head.count(b"\r\n"))
    out = m.to_bytes()
    assert out == _rebuilt(data)
    again = parse_message(out)
    assert not (again.get("via") or "").startswith("SIP/2.0/UDP 10.0.0.1:5060")
    assert again.body == m.body
    assert b"trailing" not in out


def test_an_edit_before_or_after_the_pop_is_written_too() -> None:
    after = parse_message(RESP.encode())
    after.remove_first_value("via")
    after.add("X-After", "1")
    assert parse_message(after.to_bytes()).get("x-after") == "1"
    before = parse_message(RESP.encode())
    before.add("X-Before", "1")
    before.remove_first_value("via")
    out = parse_message(before.to_bytes())
    assert out.get("x-before") == "1" and "10.0.0.1" not in out.get_all("via")[0]
    body = parse_message(RESP.encode())
    body.remove_first_value("via")
    body.body = b"new!"
    assert parse_message(body.to_bytes()).body == b"new!"


def test_start_line_method_names_shared_and_version_in_any_case() -> None:
    a = parse_message(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
    b = parse_message(b"INVITE sip:c@d sip/2.0\r\nContent-Length: 0\r\n\r\n")
    assert a.method == b.method == "INVITE" and a.method is b.method
    assert a.version == b.version == "SIP/2.0"
    c = parse_message(b"X-OWN sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
    assert c.method == "X-OWN"
    r = parse_message(b"sip/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n")
    assert not r.is_request and r.status == 180 and r.version == "SIP/2.0"
    for bad, status in ((b"INV@TE sip:a@b SIP/2.0\r\n\r\n", 400),
                        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", 505),
                        (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", 400)):
        with pytest.raises(ParseError) as err:
            parse_message(bad)
        assert err.value.status == status


def test_vias_after_via1_reads_every_line_and_item() -> None:
    def msg(vias: str):  # type: ignore[no-untyped-def]
        return parse_message(f"OPTIONS sip:a@b SIP/2.0\r\n{vias}Content-Length: 0\r\n\r\n".encode())

    one = msg("Via: SIP/2.0/UDP h1;branch=z9hG4bK1\r\n")
    top = one.via1
    assert one.vias == [top] and one.vias[0] is top
    two_items = msg("Via: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/TCP h2;branch=z9hG4bK2\r\n")
    two_items.via1  # noqa: B018
    assert [v.host for v in two_items.vias] == ["h1", "h2"]
    two_lines = msg("Via: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nv: SIP/2.0/UDP h3;branch=z9hG4bK3\r\n")
    two_lines.via1  # noqa: B018
    assert [v.host for v in two_lines.vias] == ["h1", "h3"]
    bad_second = msg("Via: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nVia: nonsense\r\n")
    bad_second.via1  # noqa: B018
    with pytest.raises(ValueError):
        bad_second.vias  # noqa: B018
