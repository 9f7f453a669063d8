from __future__ import annotations

import pytest

from siprouter.sip.headers import (
    NameAddr,
    Via,
    format_params,
    format_via,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
    split_commas,
)


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("a, b,c", ["a", "b", "c"]),
        (" a ,, b ,", ["a", "b"]),
        ("", []),
        ('"Doe, John" <sip:j@x>, <sip:k@y>', ['"Doe, John" <sip:j@x>', "<sip:k@y>"]),
        (r'"a \", b" <sip:x>, c', [r'"a \", b" <sip:x>', "c"]),
        ("<sip:a@b;x=1,2>, <sip:c>", ["<sip:a@b;x=1,2>", "<sip:c>"]),
        ('<sip:a@b>;p="x,y", z', ['<sip:a@b>;p="x,y"', "z"]),
        ('"unterminated, rest', ['"unterminated, rest']),
    ],
)
def test_split_commas(value: str, items: list[str]) -> None:
    assert split_commas(value) == items


def test_via_basic() -> None:
    (v,) = parse_via("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport")
    assert v.transport == "UDP"
    assert v.host == "pc33.atlanta.com"
    assert v.port == 5066
    assert v.branch == "z9hG4bK776asdhds"
    assert v.rport == ""
    assert v.received is None
    assert v.maddr is None and v.ttl is None
    assert v.sent_by() == "pc33.atlanta.com:5066"
    assert v.to_string() == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport"


def test_via_lws_and_case() -> None:
    (v,) = parse_via("SIP / 2.0 / tcp  host.example ; BRANCH = z9hG4bKx ; ttl=16;maddr=224.2.0.1")
    assert v.transport == "TCP"
    assert v.protocol == "SIP/2.0"
    assert v.port is None
    assert v.branch == "z9hG4bKx"
    assert v.ttl == 16
    assert v.maddr == "224.2.0.1"


def test_via_multiple_and_quoted_extension() -> None:
    vias = parse_via('SIP/2.0/UDP a.example;branch=z9hG4bK1;x="p,q", SIP/2.0/TLS b.example:5061')
    assert [v.host for v in vias] == ["a.example", "b.example"]
    assert vias[0].params["x"] == '"p,q"'
    assert vias[1].port == 5061


def test_via_ipv6() -> None:
    (v,) = parse_via("SIP/2.0/UDP [2001:db8::9:1]:5070;received=2001:db8::9:255;rport=5071")
    assert v.host == "2001:db8::9:1"
    assert v.port == 5070
    assert v.received == "2001:db8::9:255"
    assert v.rport == "5071"
    assert v.sent_by() == "[2001:db8::9:1]:5070"
    (w,) = parse_via("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255]")
    assert w.received == "[2001:db8::9:255]"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDPhost",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host:",
        "SIP/2.0/UDP [2001:db8:::1]",
        "SIP/2.0/UDP 2001:db8::1",
        "SIP/2.0/UDP host;branch",
        "SIP/2.0/UDP host;ttl=300",
        "SIP/2.0/UDP host;ttl=x",
        "SIP/2.0/UDP host junk",
        'SIP/2.0/UDP host;x="unterminated',
    ],
)
def test_via_bad(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_via(bad)


def test_format_via_round_trip() -> None:
    text = format_via("udp", "::1", 5060, {"branch": "z9hG4bKa", "rport": None})
    assert text == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKa;rport"
    assert parse_via(text) == [Via("UDP", "::1", 5060, {"branch": "z9hG4bKa", "rport": None})]


def test_name_addr_forms() -> None:
    a = parse_name_addr('"Bob \\"B\\"" <sip:bob@biloxi.com;transport=tcp>;tag=a6c85cf;x')
    assert a.display == 'Bob "B"'
    assert a.uri == "sip:bob@biloxi.com;transport=tcp"
    assert a.params == {"tag": "a6c85cf", "x": None}
    assert a.tag == "a6c85cf"
    assert a.to_string() == '"Bob \\"B\\"" <sip:bob@biloxi.com;transport=tcp>;tag=a6c85cf;x'

    b = parse_name_addr("Alice Smith <sip:alice@atlanta.com>;TAG=1928301774")
    assert b.display == "Alice Smith"
    assert b.tag == "1928301774"

    c = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert c.display == "caller"

    # bare addr-spec: the parameters are header parameters (RFC 3261 §20.10)
    d = parse_name_addr("sip:a@b.example;tag=x;expires=60")
    assert d == NameAddr(None, "sip:a@b.example", {"tag": "x", "expires": "60"})
    assert d.expires == 60
    assert d.to_string() == "<sip:a@b.example>;tag=x;expires=60"


def test_name_addr_q_and_expires() -> None:
    a = parse_name_addr("<sip:a@b>;q=0.7;expires=3600")
    assert a.q == pytest.approx(0.7)
    assert a.expires == 3600
    with pytest.raises(ValueError):
        _ = parse_name_addr("<sip:a@b>;q=1.5").q
    with pytest.raises(ValueError):
        _ = parse_name_addr("<sip:a@b>;q=nan").q
    with pytest.raises(ValueError):
        _ = parse_name_addr("<sip:a@b>;expires=-1").expires


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Bell, Alexander <sip:a.g.bell@example.com>",
        '"unterminated <sip:a@b>',
        '"x" sip:a@b',
        "<sip:a@b",
        "<>",
        "<sip:a@b> junk",
        "sip:a@b?subject=x",
        "just-a-word",
    ],
)
def test_name_addr_bad(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_name_addr(bad)


def test_name_addr_list() -> None:
    routes = parse_name_addr_list("<sip:p1.example;lr>, <sip:p2.example;lr>")
    assert [r.uri for r in routes] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    with pytest.raises(ValueError):
        parse_name_addr_list(" , ")


def test_contacts() -> None:
    assert parse_contacts(["*"]) == "*"
    cs = parse_contacts(['"A, B" <sip:a@h1>;expires=10, <sip:b@h2>', "sip:c@h3"])
    assert not isinstance(cs, str)
    assert [c.uri for c in cs] == ["sip:a@h1", "sip:b@h2", "sip:c@h3"]
    assert cs[0].display == "A, B"
    with pytest.raises(ValueError):
        parse_contacts(["*", "<sip:a@b>"])
    with pytest.raises(ValueError):
        parse_contacts(["*, *"])
    assert parse_contacts([]) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4711 INVITE", (4711, "INVITE")),
        ("  0   ack ", (0, "ack")),
        ("2147483647 X", (2**31 - 1, "X")),
    ],
)
def test_cseq(value: str, expected: tuple[int, str]) -> None:
    assert parse_cseq(value) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "INVITE",
        "1",
        "-1 INVITE",
        "2147483648 INVITE",
        "36893488147419103232 X",
        "1 IN VITE",
        "1INVITE",
    ],
)
def test_cseq_bad(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_cseq(bad)


def test_format_params() -> None:
    assert format_params({}) == ""
    assert format_params({"lr": None, "a": "1", "q": '"x y"'}) == ';lr;a=1;q="x y"'
