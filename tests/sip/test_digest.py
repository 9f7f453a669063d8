from __future__ import annotations

import hashlib

import pytest

from siprouter.sip.digest import (
    ALGORITHMS,
    format_authorization,
    format_challenge,
    ha1,
    ha1_sess,
    parse_auth_header,
    response,
    verify_response,
)

# RFC 2617 §3.5
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa",\r\n'
    '                 realm="testrealm@host.com",\r\n'
    '                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '                 uri="/dir/index.html",\r\n'
    "                 qop=auth,\r\n"
    "                 nc=00000001,\r\n"
    '                 cnonce="0a4f113b",\r\n'
    '                 response="6629fae49393a05397450978507c4ef1",\r\n'
    '                 opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_example() -> None:
    scheme, p = parse_auth_header(RFC2617_AUTHORIZATION)
    assert scheme == "Digest"
    assert p["username"] == "Mufasa"
    assert p["qop"] == "auth" and p["nc"] == "00000001"
    h = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert h == hashlib.md5(b"Mufasa:testrealm@host.com:Circle Of Life").hexdigest()
    got = response(h, p["nonce"], "GET", p["uri"], "auth", "00000001", "0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"
    assert verify_response(p, "GET", h)
    assert not verify_response(p, "POST", h)
    assert not verify_response(p, "GET", ha1("Mufasa", "testrealm@host.com", "circle of life"))


# RFC 7616 §3.9.1
RFC7616 = {
    "user": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "uri": "/dir/index.html",
}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example(algorithm: str, expected: str) -> None:
    v = RFC7616
    h = ha1(v["user"], v["realm"], v["password"], algorithm)
    got = response(h, v["nonce"], "GET", v["uri"], "auth", "00000001", v["cnonce"], algorithm)
    assert got == expected
    header = format_authorization(
        v["user"], v["realm"], v["nonce"], v["uri"], got,
        algorithm=algorithm, qop="auth", nc="00000001", cnonce=v["cnonce"],
    )  # fmt: skip
    scheme, params = parse_auth_header(header)
    assert scheme == "Digest" and params["response"] == expected
    assert verify_response(params, "GET", h)


def test_no_qop_rfc2069() -> None:
    h = ha1("u", "r", "p")
    md5 = hashlib.md5
    ha2 = md5(b"REGISTER:sip:r").hexdigest()
    assert response(h, "n", "REGISTER", "sip:r") == md5(f"{h}:n:{ha2}".encode()).hexdigest()


def test_auth_int_and_sess() -> None:
    h = ha1("u", "r", "p")
    md5 = hashlib.md5
    hb = md5(b"body").hexdigest()
    ha2 = md5(f"INVITE:sip:x:{hb}".encode()).hexdigest()
    want = md5(f"{h}:n:00000001:c:auth-int:{ha2}".encode()).hexdigest()
    assert response(h, "n", "INVITE", "sip:x", "auth-int", "00000001", "c", body=b"body") == want
    hs = ha1_sess(h, "n", "c")
    assert hs == md5(f"{h}:n:c".encode()).hexdigest()
    params = {"nonce": "n", "uri": "sip:x", "qop": "auth", "nc": "00000001", "cnonce": "c",
              "algorithm": "MD5-sess"}  # fmt: skip
    params["response"] = response(hs, "n", "INVITE", "sip:x", "auth", "00000001", "c")
    assert verify_response(params, "INVITE", h)


def test_errors() -> None:
    with pytest.raises(ValueError):
        ha1("u", "r", "p", "SHA-1")
    with pytest.raises(ValueError):
        response("x", "n", "GET", "/", "auth")  # nc/cnonce missing
    with pytest.raises(ValueError):
        response("x", "n", "GET", "/", "bogus", "1", "c")
    assert not verify_response({"nonce": "n"}, "GET", "x")
    assert not verify_response(
        {"nonce": "n", "uri": "u", "response": "r", "algorithm": "X"}, "GET", "x"
    )
    assert "SHA-256-SESS" in ALGORITHMS and "MD5" in ALGORITHMS


def test_parse_auth_header_forms() -> None:
    scheme, p = parse_auth_header(r'Digest realm="a \"q\" b", , nonce=abc,qop="auth,auth-int"')
    assert scheme == "Digest"
    assert p == {"realm": 'a "q" b', "nonce": "abc", "qop": "auth,auth-int"}
    assert parse_auth_header("Digest") == ("Digest", {})
    assert parse_auth_header("Basic REALM=x")[1] == {"realm": "x"}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        'Digest realm="unterminated',
        "Digest realm",
        "Digest realm=a nonce=b",
        "Digest realm=a, realm=b",
        'Digest realm="a"x',
        "Digest =a",
        ",Digest",
    ],
)
def test_parse_auth_header_bad(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_auth_header(bad)


def test_format_challenge() -> None:
    c = format_challenge("example.com", "n0nce", algorithm="SHA-256", opaque="o", stale=True)
    assert c == (
        'Digest realm="example.com", nonce="n0nce", opaque="o", stale=true, '
        'algorithm=SHA-256, qop="auth"'
    )
    _scheme, p = parse_auth_header(c)
    assert p["algorithm"] == "SHA-256" and p["stale"] == "true"
    assert (
        format_challenge('r"x', "n", algorithm=None, qop=None) == r'Digest realm="r\"x", nonce="n"'
    )
    with pytest.raises(ValueError):
        format_challenge("r", "n", algorithm="SHA-1")
