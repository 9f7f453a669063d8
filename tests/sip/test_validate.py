from __future__ import annotations

import pytest

from siprouter.sip.message import parse_message
from siprouter.sip.validate import unsupported_proxy_require, validate_request, validate_response

BASE = {
    "Via": "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards": "70",
    "To": "Bob <sip:bob@example.com>",
    "From": "Alice <sip:alice@example.com>;tag=1928301774",
    "Call-ID": "a84b4c76e66710@pc33.example.com",
    "CSeq": "314159 INVITE",
    "Contact": "<sip:alice@pc33.example.com>",
}


def request(
    ruri: str = "sip:bob@example.com",
    method: str = "INVITE",
    drop: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
    **over: str,
) -> bytes:
    headers = {k: v for k, v in BASE.items() if k not in drop}
    for k, v in over.items():
        headers[k.replace("_", "-")] = v
    lines = [f"{method} {ruri} SIP/2.0"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"{k}: {v}" for k, v in extra]
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def check(data: bytes) -> tuple[int, str] | None:
    return validate_request(parse_message(data))


def test_valid_request() -> None:
    assert check(request()) is None
    assert check(request("sips:bob@[2001:db8::1]:5061;transport=tcp")) is None
    assert check(request("tel:+1-201-555-0123")) is None


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory(name: str) -> None:
    assert check(request(drop=(name,))) == (400, f"Missing {name} Header Field")


def test_max_forwards_optional_unless_required() -> None:
    data = request(drop=("Max-Forwards",))
    assert check(data) is None  # RFC 3261 §16.3 step 3, RFC 4475 §3.4.1
    err = validate_request(parse_message(data), require_max_forwards=True)
    assert err == (400, "Missing Max-Forwards Header Field")


@pytest.mark.parametrize("name", ["From", "To", "Call-ID", "CSeq", "Max-Forwards"])
def test_duplicate_single_value_header(name: str) -> None:
    assert check(request(extra=((name, BASE[name]),))) == (400, f"Multiple {name} Header Fields")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Via", "SIP/2.0/UDP"),
        ("Via", "SIP/2.0/UDP host;;"),
        ("From", '"unterminated <sip:a@b>;tag=1'),
        ("From", "<sip:a@b> trailing"),
        ("To", "Bell, Alexander <sip:a@b>"),
        ("To", "<sip:user@[2001:db8:::1]>"),
        ("Call-ID", "has space"),
        ("Call-ID", "a@b@c"),
        ("CSeq", "x INVITE"),
        ("CSeq", "4294967296 INVITE"),
        ("Max-Forwards", "ten"),
        ("Max-Forwards", "256"),
        ("Contact", "sip:a@b?x=y"),
        ("Contact", "*, <sip:a@b>"),
    ],
)
def test_bad_header_values(header: str, value: str) -> None:
    over = {header.replace("-", "_"): value}
    assert check(request(**over)) == (400, f"Bad {header} Header Field")  # type: ignore[arg-type]


def test_bad_route() -> None:
    got = check(request(extra=(("Route", "<sip:p1.example.com;lr"),)))
    assert got == (400, "Bad Route Header Field")
    got = check(request(extra=(("Record-Route", "junk"),)))
    assert got == (400, "Bad Record-Route Header Field")
    assert check(request(extra=(("Route", "<sip:p1;lr>, <sip:p2;lr>"),))) is None


def test_cseq_method_mismatch() -> None:
    assert check(request(method="OPTIONS")) == (400, "CSeq Method Does Not Match Request Method")
    assert check(request(method="invite")) == (400, "CSeq Method Does Not Match Request Method")


@pytest.mark.parametrize(
    ("ruri", "status"),
    [
        ("http://example.com/", 416),
        ("urn:service:sos", 416),
        ("sip:bob@", 400),
        ("sip:bob@exa<mple.com", 400),
        ("sip:2001:db8::10", 400),
        ("sip:bob@example.com?Subject=hi", 400),
        ("bob@example.com", 400),
    ],
)
def test_request_uri(ruri: str, status: int) -> None:
    data = request().replace(b"sip:bob@example.com SIP/2.0", ruri.encode() + b" SIP/2.0", 1)
    err = check(data)
    assert err is not None and err[0] == status


def test_star_contact_passes_syntax() -> None:
    assert check(request(Contact="*")) is None


def response(status: str = "200 OK", **over: str) -> bytes:
    headers = {k: v for k, v in BASE.items() if k not in ("Max-Forwards",)}
    headers.update({k.replace("_", "-"): v for k, v in over.items()})
    lines = [f"SIP/2.0 {status}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def test_validate_response() -> None:
    assert validate_response(parse_message(response()))
    assert validate_response(parse_message(response("100 ")))
    assert not validate_response(parse_message(response("700 Nope")))
    assert not validate_response(parse_message(response(CSeq="99999999999 INVITE")))
    assert not validate_response(parse_message(response(Via="garbage")))
    assert not validate_response(parse_message(request()))


def test_unsupported_proxy_require() -> None:
    msg = parse_message(request(extra=(("Proxy-Require", "foo, bar"), ("Proxy-Require", "baz"))))
    assert unsupported_proxy_require(msg, frozenset({"bar"})) == ["foo", "baz"]
    assert unsupported_proxy_require(parse_message(request()), frozenset()) == []


@pytest.mark.parametrize(
    ("header", "good", "bad"),
    [
        ("From", "Alice <sip:alice@example.com>;tag=1", "Alice <sip:alice@exa mple.com>;tag=1"),
        ("To", "<sip:bob@example.com>", "<sip:bob@example.com"),
        ("Call-ID", "abc@host", "abc@@host"),
        ("CSeq", "314159 INVITE", "99999999999 INVITE"),
        ("Route", "<sip:p.example.com;lr>", "<sip:p.example.com;lr"),
        ("Contact", "<sip:alice@pc33.example.com>", "<sip:alice@pc33 .example.com>"),
        ("From", "<sip:u1@example.com>;tag=1", "<sip:u1@exa mple.com>;tag=1"),
    ],
)
def test_remembered_verdicts_stay_right(header: str, good: str, bad: str) -> None:
    """Verdicts on header values are remembered: asking again, in any order, gives the same
    answer as the first time, for good and bad values alike."""
    over = {header.replace("-", "_"): good}
    bad_over = {header.replace("-", "_"): bad}
    for _ in range(3):
        assert check(request(**over)) is None
        assert check(request(**bad_over)) == (400, f"Bad {header} Header Field")


def test_remembered_verdicts_are_bounded() -> None:
    from siprouter.sip import validate as v

    for i in range(v._MEMO_MAX_ENTRIES + 10):
        assert check(request(From=f"<sip:a{i}@example.com>;tag={i}")) is None
    assert 0 < len(v._name_addr_memo) <= v._MEMO_MAX_ENTRIES
    long_value = "<sip:" + "a" * v._MEMO_MAX_LEN + "@example.com>;tag=x"
    assert check(request(From=long_value)) is None
    assert long_value not in v._name_addr_memo
