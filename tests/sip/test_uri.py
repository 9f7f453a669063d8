from __future__ import annotations

import pytest

from siprouter.sip.uri import SipURI, UnsupportedURIScheme, normalize_ipv6, parse_uri, uri_equal


def test_parse_full() -> None:
    u = parse_uri(
        "SIPS:alice:secret@Atlanta.com:5061;Transport=TCP;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent"
    )
    assert u.scheme == "sips"
    assert u.user == "alice"
    assert u.password == "secret"
    assert u.host == "Atlanta.com"
    assert u.port == 5061
    assert u.params == {"transport": "TCP", "lr": None, "maddr": "239.255.255.1"}
    assert u.headers == {"subject": "project%20x", "priority": "urgent"}
    assert u.transport == "tcp"
    assert u.lr and u.maddr == "239.255.255.1"
    assert u.host_port() == "Atlanta.com:5061"
    assert str(u) == (
        "sips:alice:secret@Atlanta.com:5061;transport=TCP;lr;maddr=239.255.255.1"
        "?subject=project%20x&priority=urgent"
    )


def test_defaults() -> None:
    u = parse_uri("sip:example.com")
    assert u.user is None and u.password is None and u.port is None
    assert u.transport == "udp"
    assert parse_uri("sips:example.com").transport == "tls"
    assert str(u) == "sip:example.com"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "2001:db8::10", None),
        ("sip:[2001:db8::10]:5070", "2001:db8::10", 5070),
        ("sip:[2001:db8::10:5070]", "2001:db8::10:5070", None),  # RFC 5118 §4.4
        ("sip:user@[::ffff:192.0.2.1];transport=tcp", "::ffff:192.0.2.1", None),
    ],
)
def test_ipv6(text: str, host: str, port: int | None) -> None:
    u = parse_uri(text)
    assert (u.host, u.port) == (host, port)
    assert str(u) == text


def test_rfc5118_abnf_bug_tolerated() -> None:
    # RFC 5118 §4.10: the three-colon form is tolerated and names the two-colon address
    u = parse_uri("sip:user@[2001:db8:::192.0.2.1]")
    assert u.host == "2001:db8:::192.0.2.1"
    assert str(u) == "sip:user@[2001:db8:::192.0.2.1]"
    assert uri_equal(u, "sip:user@[2001:db8::192.0.2.1]")
    assert normalize_ipv6("2001:db8:::192.0.2.1") == "2001:db8::c000:201"


def test_escapes_and_odd_users() -> None:
    u = parse_uri("sip:sips%3Auser%40example.com@example.net")
    assert u.user == "sips%3Auser%40example.com"
    assert u.host == "example.net"
    assert parse_uri("sip:null-%00-null@example.com").user == "null-%00-null"
    semi = parse_uri("sip:user;par=u%40example.net@example.com")
    assert semi.user == "user;par=u%40example.net" and semi.params == {}
    tel_user = parse_uri("sip:+1-212-555-1212;phone-context=example.com@gw.example.com;user=phone")
    assert tel_user.params == {"user": "phone"}
    weird = parse_uri(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com"
    )
    assert weird.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert weird.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert weird.host == "example.com"
    esc = parse_uri("sip:user@example.com?Route=%3Csip:example.com%3E")
    assert esc.headers == {"Route": "%3Csip:example.com%3E"}


def test_tel() -> None:
    u = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert u.scheme == "tel" and u.user == "+1-201-555-0123" and u.host == ""
    assert u.params == {"phone-context": "example.com"}
    assert str(u) == "tel:+1-201-555-0123;phone-context=example.com"
    assert uri_equal("tel:+1-201-555-0123", "tel:+12015550123")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sip",
        "sip:",
        "sip:user@",
        "sip:user@host:",
        "sip:user@host:99999",
        "sip:user@host:50a",
        "sip:user@2001:db8::10",  # RFC 5118 §4.3: IPv6 must be bracketed
        "sip:[2001:db8:::10]",  # ':::' tolerated only before an embedded IPv4 address
        "sip:[2001:db8::1:::192.0.2.1]",
        "sip:[2001:db8::10",
        "sip:user name@host",
        "sip:user@host name",
        "sip:us%zzer@host",
        "sip:host;a b",
        "sip:host?x",
        "sip:host junk",
        "sip:<host>",
        "tel:",
        "1sip:host",
        "<sip:host>",
    ],
)
def test_bad(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_uri(bad)


@pytest.mark.parametrize(
    "text",
    [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
        "isbn:2983792873",
        "http://www.example.com",
    ],
)
def test_unsupported_scheme(text: str) -> None:
    with pytest.raises(UnsupportedURIScheme) as info:
        parse_uri(text)
    assert info.value.scheme == text.split(":")[0].lower()
    assert info.value.scheme in str(info.value)


# RFC 3261 §19.1.4 examples
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    ("sip:[2001:db8::10]:5060", "sip:[2001:DB8:0::10]:5060"),
    ("sip:alice@host;lr", "sip:alice@host;LR"),
]
NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice@atlanta.com", "sip:atlanta.com"),
    ("sip:alice:pw@atlanta.com", "sip:alice@atlanta.com"),
    ("sip:a%3Bb@host", "sip:a;b@host"),  # escaped reserved character is not the character
    ("sip:host;maddr=1.2.3.4", "sip:host"),
    ("sip:host;user=phone", "sip:host;user=ip"),
    ("sip:host;ttl=1", "sip:host"),
    ("sip:host;method=INVITE", "sip:host"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equal(a: str, b: str) -> None:
    assert uri_equal(a, b)
    assert uri_equal(b, a)


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_not_equal(a: str, b: str) -> None:
    assert not uri_equal(a, b)
    assert not uri_equal(b, a)


def test_constructed_uri_round_trip() -> None:
    u = SipURI("sip", "bob", "::1", 5062, {"transport": "tcp"})
    assert str(u) == "sip:bob@[::1]:5062;transport=tcp"
    assert uri_equal(u, str(u))
