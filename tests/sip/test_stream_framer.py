"""StreamFramer: RFC 3261 §18.3 stream framing, RFC 5626 §3.5.1 CRLF keep-alives, limits."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprouter.sip.framing import StreamFramer
from siprouter.sip.message import ParseError, parse_message

BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"
MSG1 = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    b"Call-ID: a@b\r\nCSeq: 1 INVITE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)
MSG2 = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    b"Call-ID: a@b\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"
)


def test_two_messages_in_one_chunk() -> None:
    f = StreamFramer()
    assert f.feed(MSG1 + MSG2) == [MSG1, MSG2]
    assert f.consumed == len(MSG1) + len(MSG2)
    assert f.buffered == 0
    assert parse_message(f.feed(MSG1)[0], stream=True).body == BODY


def test_byte_by_byte() -> None:
    f = StreamFramer()
    out: list[bytes] = []
    data = MSG1 + MSG2 + MSG1
    for i in range(len(data)):
        out += f.feed(data[i : i + 1])
    assert out == [MSG1, MSG2, MSG1]
    assert f.consumed == len(data)


@pytest.mark.parametrize("cut", [1, 10, len(MSG1) - len(BODY) - 2, len(MSG1) - 1])
def test_split_anywhere(cut: int) -> None:
    f = StreamFramer()
    assert f.feed(MSG1[:cut]) == []
    assert f.feed(MSG1[cut:] + MSG2[:5]) == [MSG1]
    assert f.feed(MSG2[5:]) == [MSG2]


def test_keepalive_ping_counted_and_skipped() -> None:
    f = StreamFramer()
    assert f.feed(b"\r\n\r\n") == []
    assert f.pings == 1
    assert f.feed(b"\r\n\r\n\r\n\r\n" + MSG2 + b"\r\n\r\n") == [MSG2]
    assert f.pings == 3
    assert f.feed(b"") == []
    assert f.pings == 0
    assert f.consumed == 12 + len(MSG2) + 4


def test_ping_split_across_feeds_and_lone_pong_ignored() -> None:
    f = StreamFramer()
    f.feed(b"\r\n")  # a pong (single CRLF): ignored, not a ping
    assert f.pings == 0
    f.feed(b"\r")
    assert f.pings == 0
    f.feed(b"\n")
    assert f.pings == 1
    f.feed(b"\r\n")
    assert f.pings == 0
    assert f.feed(MSG2) == [MSG2]  # the CRLF before a message is dropped, no ping
    assert f.pings == 0


def test_compact_content_length_and_bare_lf() -> None:
    msg = b"OPTIONS sip:a@b SIP/2.0\nCall-ID: x\nL: 3\n\nabc"
    f = StreamFramer()
    assert f.feed(msg + msg) == [msg, msg]


def test_missing_content_length_is_400() -> None:
    f = StreamFramer()
    with pytest.raises(ParseError) as ei:
        f.feed(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n")
    assert ei.value.status == 400
    # framing is lost for good
    with pytest.raises(ParseError):
        f.feed(MSG2)


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1 2", b"99999999999", b""])
def test_bad_content_length_is_400(value: bytes) -> None:
    with pytest.raises(ParseError) as ei:
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: " + value + b"\r\n\r\n")
    assert ei.value.status == 400


def test_conflicting_content_length_is_400() -> None:
    with pytest.raises(ParseError) as ei:
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab")
    assert ei.value.status == 400


def test_header_section_too_large_without_end() -> None:
    f = StreamFramer(max_message_size=200)
    f.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")
    with pytest.raises(ParseError) as ei:
        for _ in range(50):
            f.feed(b"X-Pad: " + b"a" * 20 + b"\r\n")
    assert ei.value.status == 513


def test_message_too_large_by_content_length() -> None:
    f = StreamFramer(max_message_size=100)
    with pytest.raises(ParseError) as ei:
        f.feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 500\r\n\r\n")
    assert ei.value.status == 413


def test_message_exactly_max_size_accepted() -> None:
    f = StreamFramer(max_message_size=len(MSG1))
    assert f.feed(MSG1) == [MSG1]


def test_error_after_good_message_is_deferred() -> None:
    f = StreamFramer()
    assert f.feed(MSG2 + b"garbage\r\n\r\n") == [MSG2]
    assert f.pending_error is not None and f.pending_error.status == 400
    with pytest.raises(ParseError):
        f.feed(b"")


def test_body_with_crlfcrlf_is_not_a_header_end() -> None:
    body = b"a\r\n\r\nb"
    msg = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 6\r\n\r\n" + body
    assert StreamFramer().feed(msg + MSG2) == [msg, MSG2]


def test_content_length_name_must_be_whole() -> None:
    # "X-Content-Length" and "Lx" are other headers
    msg = b"OPTIONS sip:a@b SIP/2.0\r\nX-Content-Length: 9\r\nLx: 9\r\nl: 0\r\n\r\n"
    assert StreamFramer().feed(msg) == [msg]


def test_byte_by_byte_feeding_of_a_large_header_section() -> None:
    # a 60 kB header section fed one byte at a time frames as one message; that the search does
    # not rescan the buffer each time is checked without a clock by the next test
    big = b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X-Pad: " + b"a" * 60000 + b"\r\nl: 0\r\n\r\n"
    f = StreamFramer()
    out: list[bytes] = []
    for i in range(len(big)):
        out += f.feed(big[i : i + 1])
    assert out == [big]


def test_header_search_resumes_where_it_stopped() -> None:
    # white-box: the header-end search must not restart from the message start on each feed
    f = StreamFramer()
    f.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")
    for _ in range(100):
        f.feed(b"X-Pad: aaaa\r\n")
    assert f._scan >= f.buffered - 3


def test_invalid_max_size() -> None:
    with pytest.raises(ValueError):
        StreamFramer(0)


def test_whole_segment_returned_without_copy_and_bytearray_input() -> None:
    f = StreamFramer()
    assert f.feed(MSG1)[0] is MSG1  # one message per segment: no copy on the hot path
    out = f.feed(bytearray(MSG2 + MSG1[:10]))
    assert out == [MSG2] and type(out[0]) is bytes
    assert f.feed(MSG1[10:]) == [MSG1]
    assert f.buffered == 0


# -- properties -------------------------------------------------------------------------------


def _framed(body: bytes, compact: bool) -> bytes:
    name = b"l" if compact else b"Content-Length"
    return b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n" + name + b": %d\r\n\r\n" % len(body) + body


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=60), st.booleans()), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    st.booleans(),
)
def test_any_split_gives_the_same_messages(
    parts: list[tuple[bytes, bool]], cuts: list[int], pings: bool
) -> None:
    msgs = [_framed(body, compact) for body, compact in parts]
    sep = b"\r\n\r\n" if pings else b""
    stream = sep + sep.join(msgs)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    f = StreamFramer()
    out: list[bytes] = []
    seen_pings = 0
    for a, b in itertools.pairwise(points):
        out += f.feed(stream[a:b])
        seen_pings += f.pings
    assert out == msgs
    assert seen_pings == (len(msgs) if pings else 0)
    assert f.consumed == len(stream) and f.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=300))
def test_arbitrary_bytes_give_messages_or_parse_error(data: bytes, cut: int) -> None:
    f = StreamFramer(max_message_size=256)
    try:
        out = f.feed(data[:cut]) + f.feed(data[cut:])
    except ParseError as exc:
        assert exc.status in (400, 413, 513)
    else:
        assert sum(map(len, out)) <= len(data)
        assert all(type(m) is bytes for m in out)
