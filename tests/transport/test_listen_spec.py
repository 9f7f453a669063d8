"""ListenSpec parsing: PROTO:HOST:PORT with clear errors."""

from __future__ import annotations

import socket

import pytest

from siprouter.transport import ListenSpec, parse_hostport


@pytest.mark.parametrize(
    ("text", "proto", "host", "port"),
    [
        ("udp:0.0.0.0:5060", "udp", "0.0.0.0", 5060),
        ("tcp:[::1]:5060", "tcp", "::1", 5060),
        ("udp:127.0.0.1:5080", "udp", "127.0.0.1", 5080),
        ("UDP:*:5062", "udp", "0.0.0.0", 5062),
        ("tcp:[::]:0", "tcp", "::", 0),
        ("tcp:10.0.0.1", "tcp", "10.0.0.1", 5060),
        ("  udp:127.0.0.1:5060  ", "udp", "127.0.0.1", 5060),
    ],
)
def test_parse_ok(text: str, proto: str, host: str, port: int) -> None:
    spec = ListenSpec.parse(text)
    assert (spec.proto, spec.host, spec.port) == (proto, host, port)
    assert spec.advertise_host is None and spec.advertise_port is None
    assert ListenSpec.parse(str(spec)) == spec


def test_family() -> None:
    assert ListenSpec.parse("tcp:[::1]:5060").family == socket.AF_INET6
    assert ListenSpec.parse("tcp:*:5060").family == socket.AF_INET


def test_advertise_suffix() -> None:
    spec = ListenSpec.parse("udp:10.0.0.5:5060 advertise 203.0.113.7:5080")
    assert (spec.advertise_host, spec.advertise_port) == ("203.0.113.7", 5080)
    spec = ListenSpec.parse("udp:10.0.0.5:5060 advertise sip.example.com")
    assert (spec.advertise_host, spec.advertise_port) == ("sip.example.com", None)
    assert ListenSpec.parse(str(spec)) == spec
    spec = ListenSpec.parse("tcp:[::1]:5060 advertise [2001:db8::1]:5060")
    assert spec.advertise_host == "2001:db8::1"
    assert str(spec) == "tcp:[::1]:5060 advertise [2001:db8::1]:5060"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0.0.0.0:5060", "protocol '0.0.0.0' not supported"),
        ("udp", "expected PROTO:HOST:PORT"),
        ("sctp:0.0.0.0:5060", "protocol 'sctp'"),
        ("tls:0.0.0.0:5061", "protocol 'tls'"),
        ("udp:0.0.0.0:abc", "port 'abc'"),
        ("udp:0.0.0.0:70000", "port 70000 out of range"),
        ("udp:0.0.0.0:", "port ''"),
        ("tcp:::1:5060", "must be in brackets"),
        ("tcp:[::1:5060", "missing ']'"),
        ("tcp:[::1]x:5060", "unexpected 'x:5060'"),
        ("tcp:[1.2.3.4]:5060", "not an IPv6 address"),
        ("udp:example.com:5060", "host 'example.com' is not an IP address"),
        ("udp:300.1.1.1:5060", "host '300.1.1.1'"),
        ("udp::5060", "empty host"),
        ("udp:1.2.3.4:5060 advertise ", "advertise: expected one HOST"),
        ("udp:1.2.3.4:5060 via 1.2.3.4", "unexpected 'via'"),
        ("", "expected PROTO:HOST:PORT"),
        ("udp:1.2.3.4:5060 advertise 1.2.3.4:x", "advertise: port 'x'"),
    ],
)
def test_parse_errors_name_the_bad_part(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as ei:
        ListenSpec.parse(text)
    assert fragment in str(ei.value)
    assert "listen" in str(ei.value)


def test_parse_hostport() -> None:
    assert parse_hostport("a.example:5070") == ("a.example", 5070)
    assert parse_hostport("[2001:db8::1]") == ("2001:db8::1", None)
    with pytest.raises(ValueError, match="advertise: empty host"):
        parse_hostport("", "advertise")


def test_with_advertise_keeps_own() -> None:
    plain = ListenSpec.parse("udp:10.0.0.1:5060")
    assert plain.with_advertise("203.0.113.1", 5062) == ListenSpec(
        "udp", "10.0.0.1", 5060, "203.0.113.1", 5062
    )
    assert plain.with_advertise(None, None) is plain
    own = ListenSpec.parse("udp:10.0.0.1:5060 advertise 198.51.100.2")
    assert own.with_advertise("203.0.113.1", 5062) is own
