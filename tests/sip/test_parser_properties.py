"""Property tests: bad input never crashes the parser or the value parsers.

- any bytes give a SipMessage or a ParseError, nothing else (datagram and stream framing);
- so do random mutations of the RFC 4475 / RFC 5118 messages;
- on a parsed message, header accessors, value parsers and validation raise nothing but
  ValueError (ParseError is one);
- value parsers on arbitrary text raise nothing but ValueError, and what they accept
  survives a write/read round trip.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siprouter.sip import message as sip_message
from siprouter.sip.digest import parse_auth_header
from siprouter.sip.headers import (
    _fast_via,
    _parse_one_via_full,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
    split_commas,
)
from siprouter.sip.message import ParseError, SipMessage, parse_message
from siprouter.sip.uri import parse_uri, uri_equal
from siprouter.sip.validate import validate_request, validate_response

VECTORS = sorted((Path(__file__).resolve().parent.parent / "vectors").glob("rfc*/*.dat"))
VECTOR_BYTES = [p.read_bytes() for p in VECTORS]

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# characters that matter to SIP syntax, plus some that must be refused
SIP_ALPHABET = "abcSIPsipv0123456789:;,=<>\"\\@[]?&%/. \t-_+*!~'()`{}#$\r\n\x00\x7féΩ"
sip_text = st.text(alphabet=SIP_ALPHABET, max_size=80)


def parse_or_error(data: bytes, stream: bool) -> SipMessage | None:
    try:
        return parse_message(data, stream=stream)
    except ParseError as e:
        assert isinstance(e.status, int) and isinstance(e.reason, str)
        return None


def exercise(msg: SipMessage) -> None:
    """Touch every accessor a later layer may use; only ValueError may come out."""

    def quietly(fn: object, *args: object) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except ValueError:
            pass

    assert isinstance(msg.to_bytes(), bytes)
    for attr in ("via1", "vias", "cseq_num", "cseq_method", "from_tag", "to_tag", "call_id",
                 "branch", "ruri", "reason", "body"):  # fmt: skip
        quietly(getattr, msg, attr)
    for name in set(msg.header_names()):
        quietly(msg.get, name)
        quietly(msg.get_all, name)
        quietly(msg.values, name)
    for v in msg.get_all("via"):
        quietly(parse_via, v)
    for name in ("from", "to"):
        one = msg.get(name)
        if one is not None:
            quietly(parse_name_addr, one)
    for name in ("route", "record-route"):
        for v in msg.get_all(name):
            quietly(parse_name_addr_list, v)
    quietly(parse_contacts, msg.get_all("contact"))
    for name in ("authorization", "proxy-authorization", "www-authenticate"):
        for v in msg.get_all(name):
            quietly(parse_auth_header, v)
    if msg.is_request:
        quietly(parse_uri, msg.ruri)
        err = validate_request(msg)
        assert err is None or (isinstance(err[0], int) and 400 <= err[0] <= 599)
    else:
        assert isinstance(validate_response(msg), bool)


@SETTINGS
@given(st.binary(max_size=600), st.booleans())
def test_any_bytes(data: bytes, stream: bool) -> None:
    msg = parse_or_error(data, stream)
    if msg is not None:
        exercise(msg)


@st.composite
def mutated_vector(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VECTOR_BYTES)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["set", "delete", "insert", "truncate", "dup"]))
        if op == "set":
            data[pos] = draw(st.sampled_from(b'\x00\r\n \t:;,<>"\\@[]0123456789aZ%\xff'))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "truncate":
            del data[pos:]
        else:
            end = min(len(data), pos + draw(st.integers(1, 40)))
            data[pos:pos] = data[pos:end]
    return bytes(data)


@SETTINGS
@given(mutated_vector(), st.booleans())
def test_mutated_vectors(data: bytes, stream: bool) -> None:
    msg = parse_or_error(data, stream)
    if msg is not None:
        exercise(msg)


def test_every_vector_exercised() -> None:
    for data in VECTOR_BYTES:
        for stream in (False, True):
            msg = parse_or_error(data, stream)
            if msg is not None:
                exercise(msg)
                assert msg.to_bytes() == msg.raw


@SETTINGS
@given(sip_text)
def test_split_commas_total(text: str) -> None:
    items = split_commas(text)
    assert all(item and item == item.strip() for item in items)


@SETTINGS
@given(sip_text)
def test_value_parsers_only_raise_value_error(text: str) -> None:
    for fn in (parse_via, parse_name_addr, parse_name_addr_list, parse_cseq, parse_uri,
               parse_auth_header):  # fmt: skip
        try:
            fn(text)
        except ValueError:
            pass
    try:
        parse_contacts([text])
    except ValueError:
        pass


uri_text = st.builds(
    lambda scheme, user, host, port, params: f"{scheme}:{user}{host}{port}{params}",
    st.sampled_from(["sip", "sips", "SIP", "tel"]),
    st.one_of(st.just(""), st.from_regex(r"[a-z0-9%;=+]{1,8}@", fullmatch=True)),
    st.sampled_from(["example.com", "[::1]", "[2001:db8::1]", "192.0.2.1", "h_x.example"]),
    st.sampled_from(["", ":5060", ":0", ":65535"]),
    st.from_regex(r"(;[a-z]{1,5}(=[a-zA-Z0-9%]{1,5})?){0,3}", fullmatch=True),
)


@SETTINGS
@given(st.one_of(uri_text, sip_text))
def test_uri_round_trip(text: str) -> None:
    try:
        u = parse_uri(text)
    except ValueError:
        return
    again = parse_uri(str(u))
    assert str(again) == str(u)
    assert uri_equal(u, again)


@SETTINGS
@given(st.one_of(sip_text, st.builds(lambda s: "SIP/2.0/UDP h.example" + s, sip_text)))
def test_via_round_trip(text: str) -> None:
    try:
        vias = parse_via(text)
    except ValueError:
        return
    for v in vias:
        assert parse_via(v.to_string()) == [v]


@SETTINGS
@given(st.one_of(sip_text, st.builds(lambda d, s: f"{d}<sip:a@b>{s}", sip_text, sip_text)))
def test_name_addr_round_trip(text: str) -> None:
    try:
        na = parse_name_addr(text)
    except ValueError:
        return
    assert parse_name_addr(na.to_string()) == na


via_like = st.builds(
    lambda tr, host, port, params: f"SIP/2.0/{tr} {host}{port}{params}",
    st.sampled_from(["UDP", "udp", "TcP", "TLS", "WSS", "SCTP", "XYZ", "U2", ""]),
    st.sampled_from(["h.example", "192.0.2.1", "h_x.example", "[::1]", "é.example", "", "a b"]),
    st.sampled_from(["", ":5060", ":0", ":65535", ":65536", ":123456", ":", ":5²", ":x"]),
    st.from_regex(r"(;[a-zA-Z!~]{0,5}(=[a-zA-Z0-9%:\[\]\"é,]{0,5})?){0,4}", fullmatch=True),
)


@SETTINGS
@given(st.one_of(via_like, st.builds(lambda s: "SIP/2.0/UDP h.example" + s, sip_text)))
def test_via_fast_path_agrees_with_full_parser(text: str) -> None:
    """The string-method fast path either declines or gives what the full grammar gives."""
    try:
        fast = _fast_via(text)
    except ValueError:  # only a port out of range is refused by the fast path itself
        with pytest.raises(ValueError):
            _parse_one_via_full(text)
        return
    if fast is None:
        return
    assert fast == _parse_one_via_full(text)


header_block = st.lists(
    st.one_of(
        st.builds(lambda n, v: f"{n}:{v}", st.sampled_from(
            ["Via", "via", "v", "To", "From ", "Call-ID", "X-New", "", " folded", "Bad Name"]),
            st.text(alphabet=" \t\x0b\x1fabc:;,\r\xa0\xe9", max_size=12)),
        st.text(alphabet="ab:\r\n \t", max_size=6),
    ),
    max_size=6,
).map(lambda lines: "".join(line + "\r\n" for line in lines))


@SETTINGS
@given(st.one_of(header_block, st.text(alphabet="Via:ab \r\n\t\xe9", max_size=40)))
def test_c_header_scanner_agrees_with_python_loop(block: str) -> None:
    """siprouter.sip._scan.index_headers gives what message._fast_headers gives, or declines
    exactly when it does."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip import message

    message._index_block("Via: a\r\nTo: b\r\nFrom : c\r\n")  # names the loop has seen
    py: list[list[str | None]] = []
    ok = message._fast_headers(py, block)
    got = scan.index_headers(block, message._parse_entries)
    assert got == (py if ok else None)
    # the same lines read in place, inside a longer text
    text = "INVITE sip:a SIP/2.0\r\n" + block + "\r\nbody"
    at = len("INVITE sip:a SIP/2.0\r\n")
    assert scan.index_headers(text, message._parse_entries, at, at + len(block)) == got


def test_c_header_scanner_refuses_wrong_types_and_wide_text() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    with pytest.raises(TypeError):
        scan.index_headers(b"Via: a\r\n", {})
    with pytest.raises(TypeError):
        scan.index_headers("Via: a\r\n")
    assert scan.index_headers("Via: \u0394\r\n", {"Via": ("via", "Via")}) is None
    assert scan.index_headers("", {}) == []
    for start, end in ((-1, 3), (3, 2), (0, 99)):
        with pytest.raises(ValueError):
            scan.index_headers("Via: a\r\n", {}, start, end)
    with pytest.raises(TypeError):
        scan.index_headers("Via: a\r\n", {}, 0)


def test_c_header_scanner_follows_its_names_dict() -> None:
    """The C side looks names up in its own table: it must see names added to the dict since
    its last call, a different dict, and a dict that got smaller."""
    scan = pytest.importorskip("siprouter.sip._scan")
    names: dict[str, tuple[str, str]] = {"Via": ("via", "Via")}
    # a line written as the serializer would write it again is not copied (None); any other
    # spacing is kept as it came
    assert scan.index_headers("Via: a\r\n", names) == [["via", "a", None, "Via"]]
    assert scan.index_headers("Via:a \r\n", names) == [["via", "a", "Via:a ", "Via"]]
    assert scan.index_headers("Via:  a\r\n", names) == [["via", "a", "Via:  a", "Via"]]
    assert scan.index_headers("Via: \r\n", names) == [["via", "", None, "Via"]]
    assert scan.index_headers("X-A: 1\r\n", names) is None
    names["X-A"] = ("x-a", "X-A")
    assert scan.index_headers("X-A: 1\r\n", names) == [["x-a", "1", None, "X-A"]]
    # enough new names to make the table grow; every one is found after it
    for i in range(300):
        names[f"X-N{i}"] = (f"x-n{i}", f"X-N{i}")
    block = "".join(f"X-N{i}: {i}\r\n" for i in range(300))
    got = scan.index_headers(block, names)
    assert got is not None and [h[0] for h in got] == [f"x-n{i}" for i in range(300)]
    # another dict: only its names
    other = {"To": ("to", "To")}
    assert scan.index_headers("Via: a\r\n", other) is None
    assert scan.index_headers("To: b\r\n", other) == [["to", "b", None, "To"]]
    # the first dict again, smaller than it was
    names.pop("X-A")
    assert scan.index_headers("X-A: 1\r\n", names) is None
    assert scan.index_headers("Via: a\r\n", names) == [["via", "a", None, "Via"]]
    # a name of the same length and bytes but another case is another name
    assert scan.index_headers("VIA: a\r\n", names) is None


@SETTINGS
@given(st.one_of(via_like, st.builds(lambda s: "SIP/2.0/UDP h.example" + s, sip_text)))
def test_c_via_reader_agrees_with_python_fast_path(text: str) -> None:
    """siprouter.sip._scan.via_parm accepts only what the Python fast path accepts, and reads
    it the same."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip.headers import Via, _fast_via_py

    got = scan.via_parm(text)
    try:
        py = _fast_via_py(text)
    except ValueError:  # a port out of range: C declines, the full parser names it
        assert got is None
        return
    if py is None:
        assert got is None
    elif got is not None:
        assert Via(*got) == py


tag_run = st.text(alphabet="aZ09._-", min_size=1, max_size=12)
keyed_value = st.one_of(
    st.builds(lambda a, u, b, t, c: f"{a}sip:{u}@{b}tag={t}{c}",
              sip_text, tag_run, sip_text, tag_run, sip_text),
    st.builds(lambda a, t, b, u, c: f"{a}tag={t}{b}sip:{u}@{c}",
              sip_text, tag_run, sip_text, tag_run, sip_text),
)  # fmt: skip


@SETTINGS
@given(st.one_of(sip_text, keyed_value))
def test_c_memo_key_agrees_with_python(text: str) -> None:
    """siprouter.sip._scan.memo_key gives what validate._memo_key_py gives."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip.validate import _memo_key_py

    assert scan.memo_key(text) == _memo_key_py(text)


# where users and tags sit in real values, and some places where they must not change the verdict
key_prefix = st.one_of(sip_text, st.sampled_from([
    "<", '"Alice" <', "", "Alice <", "<sips:x@y;f=", '"', "<sip:p.example.com;lr;f", "x <",
    "<tel:+1;", "<sip:a@b?h=",
]))  # fmt: skip
key_middle = st.one_of(sip_text, st.sampled_from([
    "example.com>;", "example.com:5060;transport=udp>;", "[::1]>; ", "h>;x=1;", "h;f", "h>",
    "h.example.com;lr;f", "1.2.3.4:5>;", "%41>;", "-h>;",
]))  # fmt: skip
key_suffix = st.one_of(sip_text, st.sampled_from([
    "", ">", ";x=1", ">;x", ";lr>", ">, <sip:q.example.com;lr>", "@h>", " ;a", '"', "%", ":5",
]))  # fmt: skip


@SETTINGS
@given(key_prefix, tag_run, tag_run, key_middle, tag_run, tag_run, key_suffix)
def test_verdicts_under_one_memo_key_agree(
    a: str, u1: str, u2: str, b: str, t1: str, t2: str, c: str
) -> None:
    """Two values that share a memo key (they differ only in the user run after their first
    "sip:" and the run after their first "tag=") get the same verdict from the uncached checks:
    remembering the verdict under the key is sound."""
    from siprouter.sip.validate import (
        _check_name_addr_uncached,
        _fast_name_addr,
        _memo_key_py,
        _uri_list_ok,
    )

    v1, v2 = f"{a}sip:{u1}@{b}tag={t1}{c}", f"{a}sip:{u2}@{b}tag={t2}{c}"
    k1 = _memo_key_py(v1)
    if k1 is None or k1 != _memo_key_py(v2):
        return
    assert _check_name_addr_uncached(v1) == _check_name_addr_uncached(v2)
    assert _uri_list_ok(v1) == _uri_list_ok(v2)
    assert _fast_name_addr(v1) == _fast_name_addr(v2)  # the Contact memo's check
    w1, w2 = f"{a}tag={t1}{c}", f"{a}tag={t2}{c}"  # a tag alone
    if _memo_key_py(w1) is not None and _memo_key_py(w1) == _memo_key_py(w2):
        assert _check_name_addr_uncached(w1) == _check_name_addr_uncached(w2)
        assert _uri_list_ok(w1) == _uri_list_ok(w2)


def test_memo_keys_of_real_values() -> None:
    from siprouter.sip.validate import _memo_key_py

    assert _memo_key_py("<sip:user12@127.0.0.1>;tag=98R") == "<sip:@127.0.0.1>;tag="
    assert _memo_key_py('"A" <sip:a@h>') == '"A" <sip:@h>'
    assert _memo_key_py("<sip:127.0.0.1:5060;lr;ftag=x1>") == "<sip:127.0.0.1:5060;lr;ftag=>"
    assert _memo_key_py("<sip:@h>") is None and _memo_key_py("<sip:a@h>;tag=") is None
    assert _memo_key_py("<sip:%41@h>;tag=1") == "<sip:%41@h>;tag="  # user not a plain run


@SETTINGS
@given(st.one_of(
    sip_text,
    st.builds(lambda a, t, b: f"<sip:a@b>{a};tag={t}{b}", sip_text, tag_run, sip_text),
    st.builds(lambda a, b: f"<sip:a@b;tag=u>{a};TaG = {b}", sip_text, sip_text),
))  # fmt: skip
def test_tag_fast_path_agrees_with_the_scan(value: str) -> None:
    """message._tag_of's shortcut for ";tag=" gives what the general scan gives."""
    from siprouter.sip.message import _tag_of, _tag_scan

    gt = value.rfind(">")
    assert _tag_of(value) == _tag_scan(value[gt + 1 :] if gt >= 0 else value)


branch_via = st.builds(
    lambda v, b, rest: f"{v};branch={b}{rest}",
    via_like, st.sampled_from(["z9hG4bKw001123.0", "z9hG4bK-x", "", " z", "a;b", '"q"', "é"]),
    st.sampled_from(["", ";rport", ";BRANCH=z9hG4bKother", ", SIP/2.0/UDP b;branch=z9hG4bKb",
                     ";x=1", " ;y"]),
)  # fmt: skip


@SETTINGS
@given(st.one_of(via_like, branch_via))
def test_top_branch_agrees_with_the_parsed_via(via: str) -> None:
    """SipMessage.top_branch reads the branch from the text; wherever the top Via parses, it
    gives the branch the parsed Via has."""
    data = (f"SIP/2.0 200 OK\r\nVia: {via}\r\nCSeq: 1 INVITE\r\n\r\n").encode()
    try:
        fresh, other = parse_message(data), parse_message(data)
    except ParseError:
        return
    top = fresh.top_branch()
    try:
        parsed = other.via1
    except ValueError:
        return
    assert top == parsed.branch


route_like = st.builds(
    lambda a, u, b, t, c: f"{a}sip:{u}@{b}tag={t}{c}",
    st.sampled_from(["<", "", '"x" <', "<sips:"]), tag_run,
    st.sampled_from(["127.0.0.1:5060;lr;f", "h.example;r2=on;f", "h;r2;f", "[::1]:5;lr;f", "h;",
                     "h:99999;f", "h;lr>;f"]),
    tag_run, st.sampled_from([">", ";r2=on>", ">, <sip:b;lr>", "", ">;x"]),
)  # fmt: skip


@SETTINGS
@given(route_like, tag_run, tag_run)
def test_remembered_route_facts_are_those_of_the_value(value: str, u2: str, t2: str) -> None:
    """loose_route's remembered facts about a Route value (usable, host, port, r2) are the ones
    the full parse gives, for the value remembered first and for another user and ftag."""
    from siprouter.proxy.routing import _route_target, _route_uri

    def facts(v: str) -> tuple[bool, str, int | None, bool]:
        u = _route_uri(v)
        if u is None or u.scheme == "tel":
            return (False, "", None, False)
        return (True, u.host, u.port, u.params.get("r2") is not None)

    at = value.find("sip:") + 4
    user_end = value.find("@", at)
    tag_at = value.find("tag=", user_end) + 4
    rest = value[tag_at:].lstrip("aZ09._-")
    other = value[:at] + u2 + value[user_end:tag_at] + t2 + rest
    assert _route_target(value) == facts(value)
    assert _route_target(other) == facts(other)


@SETTINGS
@given(st.text(alphabet="aZ09_-.:;?[]@%é 5", max_size=16))
def test_hostport_scan_agrees_with_the_regex(rest: str) -> None:
    """Where the hand scan of a URI's hostport gives an end, the regex matches the same host
    and port there, and what follows is the end, ';' or '?'."""
    from siprouter.sip import uri

    end = uri._scan_hostport(rest)
    if end == 0:
        return
    m = uri._HOSTPORT_RE.match(rest)
    assert m is not None and m.group(1) is None and m.end() == end
    colon = rest.find(":", 0, end)
    assert m.group(2) == (rest[:end] if colon < 0 else rest[:colon])
    assert m.group(3) == (None if colon < 0 else rest[colon + 1 : end])
    assert end == len(rest) or rest[end] in ";?"


@pytest.mark.parametrize("text", [
    "sip:alice@example.com", "sip:alice@127.0.0.1:5060;transport=udp", "sip:h.example.com.",
    "sip:[::1]:5070", "sip:a@-bad.example.com", "sip:a@bad-.example.com", "sip:a@host:",
    "sip:a@host:99999", "sip:a@host:50x", "sip:a@host?subject=x", "sip:a@.host", "sip:a@h_1",
])
def test_parse_uri_hostport_forms(text: str) -> None:
    """parse_uri gives the same host/port (or the same refusal) as the regex alone would."""
    from siprouter.sip import uri

    rest = text.partition(":")[2].rpartition("@")[2]
    m = uri._HOSTPORT_RE.match(rest)
    try:
        got = uri._parse_uri(text)
    except ValueError:
        tail = rest[m.end():] if m else "x"
        assert (m is None or (tail and tail[0] not in ";?")
                or (m.group(3) is not None and int(m.group(3)) > 65535))
        return
    assert m is not None
    host = m.group(1) if m.group(1) is not None else m.group(2)
    assert (got.host, got.port) == (host, None if m.group(3) is None else int(m.group(3)))


@SETTINGS
@given(st.text(alphabet="0123456789", min_size=1, max_size=18))
def test_digits_value_is_int(text: str) -> None:
    from siprouter.sip.message import _digits_value

    assert _digits_value(text) == int(text)


@pytest.mark.parametrize("data", [
    b"SIP/2.0 \xb2\xb2\xb2 Odd\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",
])
def test_non_ascii_digits_in_a_status_code_are_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(data)


def test_non_ascii_digits_in_cseq_are_invalid() -> None:
    msg = parse_message(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        "CSeq: \u00b2 OPTIONS\r\nContent-Length: 0\r\n\r\n".encode("utf-8")
    )
    with pytest.raises(ValueError):
        _ = msg.cseq_num


edit = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(["Via", "x-new", "Record-Route", "v", "Subject"]),
              st.text(alphabet="abc;=:, \xe9", max_size=10), st.booleans()),
    st.tuples(st.just("set"), st.sampled_from(["max-forwards", "to", "x-other"]),
              st.text(alphabet="abc;=1 \xe9", max_size=10), st.just(False)),
    st.tuples(st.just("remove"), st.sampled_from(["via", "to", "x-new"]), st.just(""),
              st.just(False)),
    st.tuples(st.just("pop"), st.sampled_from(["via", "route"]), st.just(""), st.just(False)),
    st.tuples(st.just("ruri"), st.just(""), st.sampled_from(["sip:b@c", "sip:\xe9@d"]),
              st.just(False)),
)


def _apply_edits(msg: SipMessage, edits: list) -> None:
    """The edits drawn from ``edit``, in order."""
    for op, name, value, flag in edits:
        if op == "add":
            msg.add(name, value, first=flag)
        elif op == "set":
            msg.set(name, value)
        elif op == "remove":
            msg.remove(name)
        elif op == "pop":
            msg.remove_first_value(name)
        else:
            msg.ruri = value


@SETTINGS
@given(header_block, st.lists(edit, max_size=5))
def test_c_serializer_agrees_with_python_writer(block: str, edits: list) -> None:
    """siprouter.sip._scan.serialize writes what message._write_out writes, for a parsed
    message after any edits, or declines; to_bytes() is that same text either way."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip import message

    data = ("OPTIONS sip:a@h SIP/2.0\r\n" + block + "\r\n").encode("latin-1") + b"body"
    try:
        msg = parse_message(data)
    except ParseError:
        return
    _apply_edits(msg, edits)
    out = msg.to_bytes()
    if not msg._edited:
        assert out == data[: len(out)]
        return
    first = msg._first or msg.first_line()
    py = message._write_out(first, msg._hdrs, msg._body)
    got = scan.serialize(first, msg._hdrs, msg._body, message._DISPLAY)
    assert got is None or got == py
    assert out == py


def test_c_serializer_declines_what_it_cannot_write() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    display = {"via": "Via"}
    line = ["via", "a", "Via: a", "Via"]
    assert scan.serialize("X", [line], b"b", display) == b"X\r\nVia: a\r\n\r\nb"
    # an edited entry: its written name, else the display name of its canonical name
    assert scan.serialize("X", [["via", "b", None, "v"]], b"", display) == b"X\r\nv: b\r\n\r\n"
    assert scan.serialize("X", [["via", "b", None, None]], b"", display) == b"X\r\nVia: b\r\n\r\n"
    assert scan.serialize("X", [["via", "b", None, ""]], b"", display) == b"X\r\nVia: b\r\n\r\n"
    assert scan.serialize("X", [], b"", display) == b"X\r\n\r\n"
    # the Python writer's cases: a name without a display spelling, text beyond latin-1,
    # an entry that is not an index_headers list
    assert scan.serialize("X", [["x-a", "b", None, None]], b"", display) is None
    assert scan.serialize("X", [["via", "\u20ac", None, None]], b"", display) is None
    assert scan.serialize("X", [["via", "a", "Via: \u20ac", "Via"]], b"", display) is None
    assert scan.serialize("\u20ac", [line], b"", display) is None
    assert scan.serialize("X", [("via", "a", "Via: a", "Via")], b"", display) is None
    assert scan.serialize("X", [["via", "a"]], b"", display) is None
    with pytest.raises(TypeError):
        scan.serialize("X", [line], "body", display)
    with pytest.raises(TypeError):
        scan.serialize("X", [line], b"")


via_value = st.one_of(
    sip_text,
    st.builds(lambda a, b, c: f"SIP/2.0/UDP h{a};BrAnCh={b}{c}", sip_text,
              st.text(alphabet="z9hG4bK-.x", max_size=12), sip_text),
    st.builds(lambda a, b: f" SIP/2.0/UDP h;branch=z9hG4bK{a}\xa0,{b}", sip_text, sip_text),
)


@SETTINGS
@given(via_value)
def test_c_via_branch_agrees_with_python_reader(raw: str) -> None:
    """siprouter.sip._scan.via_branch reads the branch message._via_branch_py reads, or
    declines when it does (and for text beyond latin-1, which the full parser reads)."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip import message

    got, py = scan.via_branch(raw), message._via_branch_py(raw)
    if got is None and py is not None:  # C reads only text of one byte per code point
        assert max(map(ord, raw)) > 0xFF
    else:
        assert got == py


cseq_value = st.one_of(
    sip_text,
    st.builds(lambda a, n, b, m, c: f"{a}{n}{b}{m}{c}",
              st.sampled_from(["", " ", "\t", "\xa0", "\x1c"]),
              st.one_of(st.integers(0, 2**31 + 5).map(str), st.sampled_from(["00", "²", "1x"])),
              st.sampled_from([" ", "  ", "\t", "\x85", ""]),
              st.sampled_from(["INVITE", "BYE", "invite", "X-Y", "ACK BYE", "É"]),
              st.sampled_from(["", " ", "\r\n", "\xa0"])),
)


@SETTINGS
@given(cseq_value)
def test_c_cseq_reader_agrees_with_python_reader(value: str) -> None:
    """siprouter.sip._scan.cseq reads what message._cseq_py reads; it declines every value
    the Python reader refuses (and text beyond latin-1)."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip import message

    got = scan.cseq(value, message._METHOD_NAMES)
    try:
        py = message._cseq_py(value)
    except ValueError:
        assert got is None
        return
    if got is None:  # C reads only text of one byte per code point
        assert max(map(ord, value)) > 0xFF
    else:
        assert got == py


def test_c_cseq_reader_shares_method_names() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip.message import _METHOD_NAMES as names

    a, b = scan.cseq("1 INVITE", names), scan.cseq(" 2147483647\tINVITE ", names)
    assert a == (1, "INVITE") and b == (2147483647, "INVITE") and a[1] is b[1]
    assert scan.cseq("2147483648 INVITE", names) is None
    assert scan.cseq("1 INVITE x", names) is None
    assert scan.cseq("12345678901 BYE", names) is None
    assert scan.via_branch("SIP/2.0/UDP h;branch=z9hG4bKa;rport, SIP/2.0/UDP k") == "z9hG4bKa"
    assert scan.via_branch("SIP/2.0/UDP h;branch=a;branch=b") is None
    assert scan.via_branch('SIP/2.0/UDP h;branch=a;x="q"') is None
    with pytest.raises(TypeError):
        scan.cseq(b"1 INVITE", names)


@SETTINGS
@given(st.text(alphabet="ab \t\r\n<>\"\xe9\u20ac:", max_size=12))
def test_text_checks_agree_with_str_and_regex(text: str) -> None:
    """is_ascii is str.isascii; any_char_in(text, table) is a search for the class."""
    import re

    from siprouter.sip.charset import any_char_in, char_table
    from siprouter.sip.message import is_ascii

    assert is_ascii(text) == text.isascii()
    bad = " \t\r\n<>\""
    assert any_char_in(text, char_table(bad)) == (re.search(r'[ \t\r\n<>"]', text) is not None)


@SETTINGS
@given(st.text(alphabet=" \t\r\n;=ab\"<>,", max_size=14), st.integers(0, 3))
def test_parse_params_agrees_with_its_regex(text: str, pos: int) -> None:
    """parse_params' shortcut (no ";" ahead: no parameter) gives what the regex loop gives."""
    from siprouter.sip.headers import _PARAM_RE, parse_params

    want: dict[str, str | None] = {}
    at = pos
    m = _PARAM_RE.match(text, at)
    while m is not None:
        want[m.group(1).lower()] = m.group(2)
        at = m.end()
        m = _PARAM_RE.match(text, at)
    assert parse_params(text, pos) == (want, at)


uri_like = st.builds(
    lambda scheme, user, host, port, params, tail: f"{scheme}:{user}{host}{port}{params}{tail}",
    st.sampled_from(["sip", "sips", "SIP", "SiPs", "tel", "sipx", "si"]),
    st.one_of(st.just(""), st.text(alphabet="aZ09-_.!~*'()&=+$,;?/%:@\xe9 ", max_size=8)
              .map(lambda u: u + "@")),
    st.one_of(st.sampled_from(["example.com", "EX.com", "[::1]", "192.0.2.1", "h_x", "-h", "h-",
                               ".h", "h.", "", "h\xe9"]),
              st.text(alphabet="aZ09-_.[]:", max_size=10)),
    st.sampled_from(["", ":5060", ":0", ":65535", ":65536", ":123456", ":", ":05060", ":5a"]),
    st.one_of(st.from_regex(r"(;[a-zA-Z]{1,5}(=[a-zA-Z0-9%]{0,5})?){0,3}", fullmatch=True),
              st.text(alphabet=";=aZ09-_.!~*'()[]/:&+$%,?", max_size=12)),
    st.sampled_from(["", "?h=v", "?", ";", "=", " ", ">", "@x"]),
)


@SETTINGS
@given(st.one_of(uri_like, uri_text, sip_text))
def test_c_uri_reader_agrees_with_python_parser(text: str) -> None:
    """siprouter.sip._scan.uri_parts accepts only URIs the Python parser accepts, and reads
    them to the same scheme, user, host, port and parameters (and no password or headers)."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip.uri import _parse_uri_py

    got = scan.uri_parts(text)
    # uri_ok says True exactly where uri_parts reads the URI
    assert scan.uri_ok(text) is (None if got is None else True), text
    if got is None:
        return
    u = _parse_uri_py(text)  # must not raise
    assert got == (u.scheme, u.user, u.host, u.port, u.params), text
    assert u.password is None and u.headers == {}


def test_c_uri_reader_reads_the_common_forms() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    assert scan.uri_parts("SIP:alice@Example.COM:5060;Transport=TCP;lr") == (
        "sip", "alice", "Example.COM", 5060, {"transport": "TCP", "lr": None})
    assert scan.uri_parts("sips:h.example") == ("sips", None, "h.example", None, {})
    for other in ("sip:a:pw@h", "sip:%61@h", "sip:[::1]", "sip:h?x=y", "sip:h:70000",
                  "tel:+1555", "sip:h;", "sip:h;a=", "sip:@h", "sip:h\xe9"):
        assert scan.uri_parts(other) is None, other
    with pytest.raises(TypeError):
        scan.uri_parts(b"sip:h")


name_addr_like = st.builds(
    lambda lead, uri, close, params, tail: f"{lead}{uri}{close}{params}{tail}",
    st.sampled_from(["<", "", " <", '"A" <', "A <", "<<"]),
    st.one_of(st.sampled_from(["sip:a@h", "sip:h:5060;lr", ":x", "x", "", "sip:a b", 'sip:"a',
                               "sips:[::1]:5061", "tel:+1"]),
              st.text(alphabet="sip:@ab;=<\"\t", max_size=10)),
    st.sampled_from([">", "", ">>"]),
    st.one_of(st.from_regex(r"(;[a-zA-Z]{1,5}(=[a-zA-Z0-9:.]{0,5})?){0,3}", fullmatch=True),
              st.text(alphabet=";= \t\"aZ9,<>\xe9-", max_size=12)),
    st.sampled_from(["", " ", ",x", ";", "\r\n"]),
)


@SETTINGS
@given(st.one_of(name_addr_like, sip_text))
def test_c_name_addr_reader_agrees_with_python_parser(text: str) -> None:
    """siprouter.sip._scan.name_addr_parts accepts only name-addrs the Python parser accepts,
    and reads them to the same URI and parameters (and no display name)."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip.headers import _parse_name_addr_py

    got = scan.name_addr_parts(text)
    if got is None:
        return
    na = _parse_name_addr_py(text)  # must not raise
    assert got == (na.uri, na.params) and na.display is None, text


def test_c_name_addr_reader_reads_the_common_forms() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    assert scan.name_addr_parts("<sip:a@h:5062>") == ("sip:a@h:5062", {})
    assert scan.name_addr_parts("<sip:b@h;lr>;TAG=x1;Expires=60;q=0.5;+sip.instance") == (
        "sip:b@h;lr", {"tag": "x1", "expires": "60", "q": "0.5", "+sip.instance": None})
    for other in ('"A" <sip:a@h>', "A <sip:a@h>", "sip:a@h", "<sip:a@h> ", "<sip:a@h>;",
                  "<sip:a@h>;t=", '<sip:a@h>;t="x"', "<:a>", "<a>", "<sip:a b>", "<sip:\xe9>",
                  "<sip:a@h>,<sip:b@h>"):
        assert scan.name_addr_parts(other) is None, other


# near the common form, so that name_addr_ok says True often: a display name or none, a sip:
# URI of odd but mostly valid parts, parameters with any characters a value may hold
common_name_addr = st.builds(
    lambda disp, scheme, user, host, port, uparams, params: (
        f"{disp}<{scheme}:{user}{host}{port}{uparams}>{params}"),
    st.one_of(st.just(""), st.from_regex(r'"[ -~\t]{0,6}" ?', fullmatch=True),
              st.from_regex(r"[a-zA-Z0-9.!%*_+`'~-]{1,4}([ \t]+[a-zA-Z0-9-]{1,3})?[ \t]?",
                            fullmatch=True)),
    st.sampled_from(["sip", "sips", "SIP", "tel", "sipx"]),
    st.one_of(st.just(""), st.from_regex(r"[a-zA-Z0-9&=+$,;?/%:._!~*'()-]{0,5}@",
                                         fullmatch=True)),
    st.from_regex(r"[a-zA-Z0-9._-]{0,8}|\[::1\]", fullmatch=True),
    st.sampled_from(["", ":5060", ":0", ":65536", ":", ":12a"]),
    st.from_regex(r"(;[a-zA-Z0-9\[\]/:&+$_.!~*'()-]{0,4}(=[a-zA-Z0-9:/&]{0,3})?){0,2}",
                  fullmatch=True),
    st.from_regex(r"(;[a-zA-Z0-9.+-]{0,4}(=[!-~]{0,4})?){0,3}", fullmatch=True),
)


@SETTINGS
@given(st.one_of(name_addr_like, sip_text, common_name_addr))
def test_c_name_addr_check_accepts_only_what_every_full_check_accepts(text: str) -> None:
    """siprouter.sip._scan.name_addr_ok says True only for values that the checks it stands
    in for accept: a From/To value, a Route/Record-Route list, a single Contact."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip import validate
    from siprouter.sip.headers import parse_contacts

    ok = scan.name_addr_ok(text)
    assert ok is None or ok is True
    if ok:
        assert validate._check_name_addr_uncached(text), text
        assert validate._uri_list_ok(text), text
        parse_contacts([text])  # must not raise
        # and after any display name, the common form that both C readers read
        got = scan.name_addr_parts(text[text.rindex("<"):])
        assert got is not None and scan.uri_parts(got[0]) is not None


def test_c_name_addr_check_of_the_common_forms() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    for good in ("<sip:a@h:5062>", "<sip:127.0.0.1:5890;lr;ftag=a1>",
                 "<sips:b@h.example;transport=tls>;tag=x1;expires=60;+sip.instance",
                 '"bench" <sip:caller@127.0.0.1:5891>;tag=1C2', '"A\tB"<sip:a@h>',
                 "Alice Liddell <sip:a@h>", "A\t<sip:a@h>"):
        assert scan.name_addr_ok(good) is True, good
    for other in ('"A\\" <sip:a@h>', '"A <sip:a@h>', '"\x01" <sip:a@h>', " <sip:a@h>",
                  "A,B <sip:a@h>", "sip:a@h", "<sip:a@h>;", "<tel:+1>", "<sip:a@[::1]>",
                  "<sip:a@h?x=y>", "<sip:a@-h>", "<sip:a@h:99999>", "<sip:@h>", "<sip:\xe9@h>",
                  "<sip:a@h>,<sip:b@h>", "", "<>"):
        assert scan.name_addr_ok(other) is None, other
    with pytest.raises(TypeError):
        scan.name_addr_ok(b"<sip:h>")


@SETTINGS
@given(st.one_of(sip_text, st.text(alphabet="a@-.()<>:\\\"/[]?{}\t \xe9", max_size=12)))
def test_c_call_id_check_agrees_with_python(text: str) -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip import validate

    assert scan.call_id_ok(text) is validate._call_id_ok_py(text), text


def test_c_call_id_check_of_some_forms() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    for good in ("a84b4c76e66710@pc33.atlanta.com", "1-2@127.0.0.1", "x", "{}[]<>?/:"):
        assert scan.call_id_ok(good) is True, good
    for bad in ("", "@", "a@", "@b", "a@b@c", "a b", "a\xe9", "a\u20ac"):
        assert scan.call_id_ok(bad) is False, bad


@SETTINGS
@given(header_block, st.lists(edit, max_size=4),
       st.sets(st.sampled_from(["via", "from", "to", "call-id", "cseq", "timestamp", "x-new"])),
       st.sampled_from([None, "t1", "\xe9", "\u20ac"]),
       st.sampled_from(["Content-Length: 0\r\n\r\n", "X: \xe9\r\nContent-Length: 2\r\n\r\n",
                        "\u20ac\r\n\r\n"]),
       st.sampled_from([b"", b"ab"]))
def test_c_response_writer_agrees_with_python_writer(
    block: str, edits: list, names: set[str], tag: str | None, tail: str, body: bytes
) -> None:
    """SipMessage.response_bytes (sip._scan.serialize with names, a To tag and a tail) writes
    what build._response_py writes from the same request after any edits, or declines."""
    pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip.build import _response_py

    data = ("OPTIONS sip:a@h SIP/2.0\r\n" + block + "\r\n").encode("latin-1")
    try:
        msg = parse_message(data)
    except ParseError:
        return
    _apply_edits(msg, edits)
    first = "SIP/2.0 200 OK"
    got = msg.response_bytes(first, frozenset(names), tag, tail, body)
    try:
        py: bytes | None = _response_py(msg, first, frozenset(names), tag, tail, body)
    except UnicodeEncodeError:  # text beyond latin-1: C declines, Python raises
        py = None
    if got is not None:
        assert got == py
    elif py is not None:
        # C declines only a tag beyond latin-1 (up front, used or not) or an edited line whose
        # name it has no spelling for (Python makes one)
        from siprouter.sip.message import _DISPLAY

        assert any(ord(ch) > 255 for ch in tag or "") or any(
            h[0] in names and h[2] is None and not h[3] and h[0] not in _DISPLAY
            for h in msg._hdrs)


def test_make_response_writes_the_same_in_c_and_python() -> None:
    from siprouter.sip.build import _COPIED_SET, _response_py, _tail, make_response

    req = parse_message(
        b"REGISTER sip:h SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nf: <sip:u@h>;tag=1\r\n"
        b"t: <sip:u@h>\r\ni: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:u@a>\r\n"
        b"Content-Length: 0\r\n\r\n")
    got = make_response(req, 200, to_tag="x9", headers=[("Contact", "<sip:u@a>")],
                        server="srv")
    assert got == (b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nf: <sip:u@h>;tag=1\r\n"
                   b"To: <sip:u@h>;tag=x9\r\ni: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:u@a>\r\n"
                   b"Server: srv\r\nContent-Length: 0\r\n\r\n")
    tail = _tail([("Contact", "<sip:u@a>")], b"", "srv")
    assert _response_py(req, "SIP/2.0 200 OK", _COPIED_SET, "x9", tail, b"") == got


def test_c_response_writer_with_many_lines() -> None:
    """More entries than the writer's stack holds (64) take its heap path: the same text."""
    from siprouter.sip.build import _COPIED_SET, _response_py, _tail

    vias = "".join(f"Via: SIP/2.0/UDP h{i};branch=z9hG4bK{i}\r\n" for i in range(80))
    req = parse_message(
        f"INVITE sip:h SIP/2.0\r\n{vias}From: <sip:u@h>;tag=1\r\nTo: <sip:u@h>\r\n"
        "Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode())
    tail = _tail([], b"", None)
    got = req.response_bytes("SIP/2.0 180 Ringing", _COPIED_SET, "t", tail, b"")
    assert got is not None and got.count(b"\r\nVia: ") == 80
    assert got == _response_py(req, "SIP/2.0 180 Ringing", _COPIED_SET, "t", tail, b"")


tagged_value = st.builds(
    lambda head, sep, name, eq, tag, tail: f"{head}{sep}{name}{eq}{tag}{tail}",
    st.sampled_from(["<sip:a@h>", "<sip:a@h;tag=u>", "sip:a@h", '"t" <sip:a@h>', "<sip:a>x>",
                     ""]),
    st.sampled_from([";", " ; ", ";x=1;", ";ttl=1;", "", ";\t"]),
    st.sampled_from(["tag", "TAG", "Tag", "tg", "xtag"]),
    st.sampled_from(["=", " = ", ""]),
    st.text(alphabet="ab9-.;, \t=", max_size=6),
    st.sampled_from(["", ";a", ">", ",<sip:b>;tag=2"]),
)


@SETTINGS
@given(st.one_of(tagged_value, sip_text))
def test_c_tag_reader_agrees_with_python(value: str) -> None:
    """siprouter.sip._scan.tag_of gives what message._tag_of_py gives, or "" (ask Python)."""
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip.message import _tag_of_py

    got = scan.tag_of(value)
    if got != "":
        assert got == _tag_of_py(value), value


def test_c_tag_reader_reads_the_common_forms() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    assert scan.tag_of("<sip:a@h;tag=u>;tag=ab-1") == "ab-1"
    assert scan.tag_of('"t" <sip:a@h>;x=1;tag=9') == "9"
    assert scan.tag_of("<sip:a@h>") is None and scan.tag_of("sip:a@h;x=1") is None
    for other in ("<sip:a@h>;TAG=1", "<sip:a@h>;ttl=1;tag=2", "<sip:a@h>;tag=", "<sip:a@h>; tag=1",
                  "<sip:\u20ac>;tag=1"):
        assert scan.tag_of(other) == "", other


def _parsed_state(data: bytes, stream: bool, python_only: bool) -> object:
    """Everything a parse leaves in a message, or the status of the ParseError."""
    from siprouter.sip import message

    try:
        if python_only:
            start = len(data) - len(data.lstrip(b"\r\n"))
            if not data or start == len(data):
                raise ParseError(0, "empty")
            msg = message._parse_message_py(data, data.decode("latin-1"), start, stream)
        else:
            msg = parse_message(data, stream=stream)
    except ParseError as e:
        return ("error", e.status)
    # each line as it is written out (the line-by-line parser keeps a copy of every line of a
    # message with a name new to it, where the others keep none of a plain "Name: value")
    lines = [(h[0], h[1], message._line_of(h), h[3]) for h in msg._hdrs]
    return (msg.is_request, msg.method, msg._ruri, msg.status, msg._reason, msg.version,
            msg._first, lines, msg._ascii, msg._hdr_at, msg._body_at, msg.body, msg.raw)


start_lines = st.one_of(
    st.sampled_from(["INVITE sip:b@h SIP/2.0", "SIP/2.0 200 OK", "SIP/2.0 180", "SIP/2.0 180 ",
                     "SIP/2.0 099 x", "SIP/2.0 2000 x", "BYE <sip:b@h> SIP/2.0",
                     "FOO sip:h SIP/2.0",
                     "ACK sip:h SIP/2.1", "ACK sip:h sip/2.0", "ACK  sip:h SIP/2.0", "ACK sip:h",
                     "sip/2.0 200 OK", "SIP/2.0 200 \xe9", "REGISTER sip:h SIP/2.0 ", ""]),
    st.builds(lambda m, u: f"{m} {u} SIP/2.0",
              st.sampled_from(sorted(sip_message._METHOD_NAMES)),
              st.text(alphabet="sip:ab@<>;\t\xe9", min_size=0, max_size=8)),
)
header_lines = st.lists(st.sampled_from([
    "Via: SIP/2.0/UDP h;branch=z9hG4bK1", "To: <sip:b@h>", "From: <sip:a@h>;tag=1",
    "Call-ID: x@y", "CSeq: 1 INVITE", "Content-Length: 4", "Content-Length: 0", "l: 4",
    "Content-Length: 04", "Content-Length: x", "Content-Length: ", "Content-Length: 12345678901",
    "Subject: \xe9", "X-New-Name: 1", " folded", "Max-Forwards:70", "Content-Length:  4 ",
]), max_size=7)


@SETTINGS
@given(st.one_of(
    mutated_vector(),
    st.builds(lambda lead, first, lines, end, body: (
        lead + first + "\r\n" + "".join(f"{h}\r\n" for h in lines) + end + body
    ).encode("latin-1"),
        st.sampled_from(["", "\r\n"]), start_lines, header_lines,
        st.sampled_from(["\r\n", "\n", "", "\r\n\r\n"]), st.sampled_from(["", "body", "bodyxx"])),
), st.booleans())
def test_c_head_reads_messages_as_the_python_parser_does(data: bytes, stream: bool) -> None:
    """parse_message through siprouter.sip._scan.head gives the very message (or the very
    error) that the Python parser gives."""
    pytest.importorskip("siprouter.sip._scan")
    assert _parsed_state(data, stream, False) == _parsed_state(data, stream, True)


def test_c_head_reads_the_common_form_and_declines_the_rest() -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip import message

    parse_message(b"INVITE sip:b@h SIP/2.0\r\nVia: a\r\nContent-Length: 0\r\n\r\n")
    entries = message._parse_entries
    text = "\r\nINVITE sip:b@h SIP/2.0\r\nVia: a\r\nContent-Length: 2\r\n\r\nhi"
    got = scan.head(text, 2, entries)
    assert got == ("INVITE sip:b@h SIP/2.0", "INVITE", "sip:b@h", 0,
                   [["via", "a", None, "Via"], ["content-length", "2", None, "Content-Length"]],
                   26, 55, 2, True)
    for method in message._METHOD_NAMES:
        got = scan.head(f"{method} sip:h SIP/2.0\r\n\r\n", 0, entries)
        assert got is not None and got[1] == method and got[7] == -1
    assert scan.head("SIP/2.0 180\r\n\r\n", 0, entries)[:4] == ("SIP/2.0 180", "", "", 180)
    for other in ("FOO sip:h SIP/2.0\r\n\r\n", "SIP/2.0 200 OK\n\n", "SIP/2.0 200 OK\r\n",
                  "SIP/2.0 200 OK\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
                  "SIP/2.0 200 OK\r\nX-Never-Seen: 1\r\n\r\n", "SIP/2.0 200 \u20ac\r\n\r\n"):
        assert scan.head(other, 0, entries) is None, other
    with pytest.raises(TypeError):
        scan.head(b"SIP/2.0 200 OK\r\n\r\n", 0, entries)
    with pytest.raises(ValueError):
        scan.head("x", 2, entries)


via_top = st.builds(
    lambda lead, first, rport, tail, rest: f"{lead}{first}{rport}{tail}{rest}",
    st.sampled_from(["", " ", "\t", "\x85"]),
    st.sampled_from(["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", "SIP/2.0/UDP h", "x", "",
                     "SIP/2.0/UDP h;rport", 'SIP/2.0/UDP h;x="a"', "SIP/2.0/UDP <h>"]),
    st.sampled_from([";rport", ";rport=1", ";RPORT", "rport", ";rport;rport", ""]),
    st.sampled_from(["", " ", "\xa0", ";x", ",", ", "]),
    st.one_of(st.just(""), st.builds(lambda r: ", " + r, sip_text), sip_text),
)


@SETTINGS
@given(st.one_of(via_top, sip_text), st.sampled_from(["5060", "1"]),
       st.sampled_from(["10.0.0.2", "::1", "h\xe9"]))
def test_c_rport_fill_agrees_with_python(value: str, port: str, host: str) -> None:
    scan = pytest.importorskip("siprouter.sip._scan")
    from siprouter.sip.headers import _fill_rport_py

    value = value.encode("utf-8").decode("latin-1")  # wire form, as the message keeps it
    host = host.encode("utf-8").decode("latin-1")
    assert scan.rport_fill(value, port, host) == _fill_rport_py(value, port, host), value


def test_rport_fill_of_the_common_form() -> None:
    from siprouter.sip.headers import fill_rport

    v = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport"
    assert fill_rport(v, "5070", "10.0.0.9") == v + "=5070;received=10.0.0.9"
    assert fill_rport(v + " , SIP/2.0/UDP b ", "1", "h") == v + "=1;received=h, SIP/2.0/UDP b"
    assert fill_rport("SIP/2.0/UDP h;rport;x", "1", "h") is None
    assert fill_rport("SIP/2.0/UDP h;rport;rport", "1", "h") is None
