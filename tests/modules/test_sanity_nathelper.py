"""sanity (bits, Kamailio's answers, autodrop/noreply), nathelper (tests, contact rewriting,
aliases, keep-alive pings), corex and the extra siputils functions."""

from __future__ import annotations

from typing import Any

import pytest

from siprouter.modules import corex, nathelper, sanity, siputils_uri
from siprouter.modules.nathelper import Nathelper, NathelperParams, NatPinger
from siprouter.modules.sanity import Sanity
from siprouter.scripting.api import Request, StopRoute
from siprouter.sip.message import parse_message
from siprouter.sip.types import Endpoint
from siprouter.storage.location_store import Binding
from siprouter.testing.harness import Harness, script_from


def msg(method: str = "OPTIONS", ruri: str = "sip:127.0.0.1", extra: str = "",
        via: str = "SIP/2.0/UDP 192.168.1.10:5070;branch=z9hG4bKa", cseq: str = "",
        contact: str = "<sip:alice@192.168.1.10:5070>", body: str = "") -> bytes:
    text = (
        f"{method} {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: c1@x\r\nCSeq: {cseq or '1 ' + method}\r\n"
        + (f"Contact: {contact}\r\n" if contact else "")
        + extra + f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    return text.encode()


@pytest.fixture
def h() -> Harness:
    return Harness(script_from(lambda req: None))


def req_of(h: Harness, data: bytes, src: tuple[str, str, int] = ("udp", "203.0.113.5", 40000),
           ) -> Request:
    return Request(h.core, parse_message(data), Endpoint(*src), h.listener(src[0]
                   if src[0] in ("udp", "tcp") else "tcp"))


def replies(h: Harness) -> list[tuple[int, str]]:
    return [(m.status, m.reason) for _, m in h.take() if not m.is_request]


# -- sanity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("data, checks, uri_checks, answer", [
    (msg(extra="Expires: 99999999999\r\n"), 256, 7, (400, "Expires value is illegal")),
    (msg(extra="Expires: abc\r\n"), 256, 7, (400, "Expires value is illegal")),
    (msg(extra="Expires: \r\n"), 256, 7, (400, "Missing number in Expires header")),
    (msg(cseq="1 INVITE"), 32, 7, (400, "CSeq method does not match request method")),
    (msg(extra="Proxy-Require: foo\r\n"), 512, 7, (420, "Bad Proxy Require Extension")),
    (msg(via="SIP/2.0/TCP 192.168.1.10:5070;branch=z9hG4bKa"), 16, 7,
     (400, "Transport Missmatch in Topmost Via")),
    (msg(contact="<sip:alice@[bad>"), 1024, 8, (400, "Bad Contact URI")),
    (msg(contact="<sip:alice@host"), 1024, 8, (400, "Bad Contact Header")),
    (msg(extra='Authorization: Digest username="", realm="r", nonce="n", uri="sip:x", '
               'response="0"\r\n'), 2048, 7, (400, "Auth Empty User")),
    (msg(extra='Authorization: Digest realm="r"\r\n'), 2048, 7, (400, "Bad Auth Credentials")),
    (msg(via="SIP/2.0/UDP 192.168.1.10:5070;branch=abc"), 32768, 7, None),  # no reply
    (msg(via="SIP/2.0/UDP 192.168.1.10:5070"), 16384, 7, None),  # Via1 without branch
    (msg(extra="Route: <sip:p.example.com>\r\n"), 32768, 7, None),  # Route without lr
])
def test_sanity_failures_answered_as_kamailio(h: Harness, data: bytes, checks: int,
                                              uri_checks: int, answer: Any) -> None:
    req = req_of(h, data)
    assert sanity.sanity_check(req, checks, uri_checks) == -1
    got = replies(h)
    assert got == ([answer] if answer else [])


def test_sanity_passes_good_messages_and_checks_ranges(h: Harness) -> None:
    req = req_of(h, msg(extra="Expires: 3600\r\n"))
    assert sanity.sanity_check(req, 17895, 7) == 1
    assert sanity.sanity_check(req, 3047 | 4096 | 8192 | 16 | 8, 15) == 1
    assert replies(h) == []
    assert sanity.sanity_check(req, 0, 7) == -1 and sanity.sanity_check(req, 1, 16) == -1


def test_sanity_420_lists_unsupported_and_proxy_require_setting(h: Harness) -> None:
    h.core.modules["sanity"] = Sanity.from_settings({"proxy_require": "foo, bar"})
    req = req_of(h, msg(extra="Proxy-Require: foo, baz\r\n"))
    assert sanity.sanity_check(req, 512, 7) == -1
    sent = [m for _, m in h.take()]
    assert sent[0].status == 420 and sent[0].get("unsupported") == "baz"


def test_sanity_noreply_then_sanity_reply(h: Harness) -> None:
    h.core.modules["sanity"] = Sanity.from_settings({"noreply": 1})
    req = req_of(h, msg(extra="Expires: x\r\n"))
    assert sanity.sanity_check(req, 256, 7) == -1
    assert replies(h) == []
    assert sanity.sanity_reply(req) == 1
    assert replies(h) == [(400, "Expires value is illegal")]
    assert sanity.sanity_reply(req) == -1


def test_sanity_autodrop_in_pythonic_api(h: Harness) -> None:
    req = req_of(h, msg(extra="Expires: x\r\n"))
    with pytest.raises(StopRoute):
        sanity.check(req)
    h.core.modules["sanity"] = Sanity.from_settings({"autodrop": 0})
    assert sanity.check(req) is False
    assert sanity.check(req_of(h, msg())) is True


def test_sanity_size_checks(h: Harness) -> None:
    h.core.modules["sanity"] = Sanity.from_settings({"size_checks": 1, "size_ruri": 20})
    req = req_of(h, msg(ruri="sip:" + "a" * 40 + "@127.0.0.1"))
    assert sanity.sanity_check(req, 1, 7) == -1
    assert replies(h) == [(400, "Message Too Large")]


def test_sanity_settings_errors() -> None:
    from siprouter.modules.modparam import ModparamError

    with pytest.raises(ModparamError, match=r"\[modules.sanity\] default_checks"):
        Sanity.from_settings({"default_checks": 1 << 20})
    with pytest.raises(ModparamError, match=r"autodrop: expected true or false"):
        Sanity.from_settings({"autodrop": "yes"})


def test_no_reply_to_ack(h: Harness) -> None:
    req = req_of(h, msg(method="ACK", extra="Expires: x\r\n"))
    assert sanity.sanity_check(req, 256, 7) == -1
    assert replies(h) == []


# -- nathelper: nat_uac_test ------------------------------------------------------------------
SDP = "v=0\r\no=- 1 1 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\n"


@pytest.mark.parametrize("flag, natted, clean", [
    (1, msg(), msg(contact="<sip:alice@203.0.113.5:40000>")),
    (2, msg(), msg(via="SIP/2.0/UDP 203.0.113.5:40000;branch=z9hG4bKa")),
    (4, msg(), msg(via="SIP/2.0/UDP 198.51.100.1:40000;branch=z9hG4bKa")),
    (8, msg(extra="Content-Type: application/sdp\r\n", body=SDP), msg()),
    (16, msg(), msg(via="SIP/2.0/UDP 192.168.1.10:40000;branch=z9hG4bKa")),
    (128, msg(), msg(contact="<sip:alice@192.168.1.10:40000>")),
    (256, msg(extra="Content-Type: application/sdp\r\n", body=SDP),
     msg(extra="Content-Type: application/sdp\r\n", body=SDP.replace("192.168.1.10",
                                                                      "203.0.113.5"))),
])
def test_nat_uac_test_bits(h: Harness, flag: int, natted: bytes, clean: bytes) -> None:
    assert nathelper.nat_uac_test(req_of(h, natted), flag) == 1
    assert nathelper.nat_uac_test(req_of(h, clean), flag) == -1


def test_nat_uac_test_source_and_websocket(h: Harness) -> None:
    assert nathelper.nat_uac_test(req_of(h, msg(), ("udp", "10.0.0.7", 5060)), 32) == 1
    assert nathelper.nat_uac_test(req_of(h, msg()), 32) == -1
    assert nathelper.nat_uac_test(req_of(h, msg(), ("ws", "203.0.113.5", 4000)), 64) == 1
    assert nathelper.nat_uac_test(req_of(h, msg()), 64) == -1
    r = req_of(h, msg(ruri="sip:bob@198.51.100.9"))
    assert nathelper.nat_uac_test(r, 512) == -1
    r.dst_uri = "sip:203.0.113.5:40000"
    assert nathelper.nat_uac_test(r, 512) == 1
    assert nathelper.nat_uac_test(req_of(h, msg()), 19) == 1
    assert nathelper.is_rfc1918(r, "100.64.1.1") == 1 and nathelper.is_rfc1918(r, "8.8.8.8") == -1


def test_fix_nated_contact_register_and_rcv_param(h: Harness) -> None:
    r = req_of(h, msg(contact="\"A\" <sip:alice@192.168.1.10:5070;transport=udp>;expires=60, "
                              "<sip:alice@192.168.1.10:5071>"))
    assert nathelper.fix_nated_contact(r) == 1
    cs = r.msg.get_all("contact")
    assert "sip:alice@203.0.113.5:40000;transport=udp" in cs[0] and "expires=60" in cs[0]
    assert "192.168.1.10:5071" in cs[0]  # only the first contact changes
    reg = req_of(h, msg(method="REGISTER"), ("tcp", "203.0.113.5", 40001))
    assert nathelper.fix_nated_register(reg) == 1
    assert reg.vars["__received"] == "sip:203.0.113.5:40001;transport=tcp"
    assert nathelper.fix_nated_register(req_of(h, msg())) == -1  # not a REGISTER
    r2 = req_of(h, msg())
    assert nathelper.add_rcv_param(r2, 0) == 1
    assert r2.msg.get("contact") == '<sip:alice@192.168.1.10:5070>;received="sip:203.0.113.5:40000"'
    r3 = req_of(h, msg())
    assert nathelper.add_rcv_param(r3, 1) == 1
    assert "received=sip:203.0.113.5:40000>" in (r3.msg.get("contact") or "")


def test_contact_alias_and_handle_ruri_alias(h: Harness) -> None:
    r = req_of(h, msg())
    assert nathelper.add_contact_alias(r) == 1
    assert "alias=203.0.113.5~40000~1" in (r.msg.get("contact") or "")
    same = req_of(h, msg(contact="<sip:alice@203.0.113.5:40000>"))
    assert nathelper.add_contact_alias(same) == 2
    t = req_of(h, msg(), ("tcp", "203.0.113.5", 40002))
    assert nathelper.set_contact_alias(t, 0) == 1
    assert "alias=203.0.113.5~40002~2" in (t.msg.get("contact") or "")
    assert nathelper.set_contact_alias(t, 1) == 1
    assert (t.msg.get("contact") or "").count("alias=") == 1
    a = req_of(h, msg())
    assert nathelper.add_contact_alias_addr(a, "198.51.100.4", "5099", "tls") == 1
    assert "alias=198.51.100.4~5099~3" in (a.msg.get("contact") or "")
    assert nathelper.add_contact_alias_addr(a, "nope", "5099", "tls") == -1
    rr = req_of(h, msg(method="BYE", ruri="sip:alice@192.168.1.10:5070;alias=203.0.113.5~40002~2"))
    assert nathelper.handle_ruri_alias(rr) == 1
    assert rr.dst_uri == "sip:203.0.113.5:40002;transport=tcp"
    assert rr.msg.ruri == "sip:alice@192.168.1.10:5070"
    assert nathelper.handle_ruri_alias(rr) == 2
    bad = req_of(h, msg(method="BYE", ruri="sip:a@h;alias=1.2.3.4~x~1"))
    assert nathelper.handle_ruri_alias(bad) == -1


# -- nathelper: keep-alive pings ------------------------------------------------------------------
def binding(contact: str, cflags: int = 0, received: str | None = None) -> Binding:
    return Binding(aor="alice", contact=contact, expires=2_000_000_000.0, received=received,
                   cflags=cflags, call_id="c", cseq=1)


def test_pinger_selection_and_messages() -> None:
    p = NatPinger(NathelperParams(natping_interval=30, ping_nated_only=True, nat_bflag=6,
                                  sipping_bflag=7, sipping_from="sip:pinger@example.com"))
    bs = [
        binding("sip:a@192.168.1.10:5070", cflags=(1 << 6) | (1 << 7),
                received="sip:203.0.113.5:40000"),
        binding("sip:b@192.168.1.11:5070", cflags=1 << 6),  # NATed, UDP ping
        binding("sip:c@198.51.100.2:5060"),  # not NATed: skipped
    ]
    out = p.pings(bs, lambda dest: "127.0.0.1:5060")
    assert [d for d, _ in out] == [Endpoint("udp", "203.0.113.5", 40000),
                                   Endpoint("udp", "192.168.1.11", 5070)]
    m = parse_message(out[0][1])
    assert m.method == "OPTIONS" and m.ruri == "sip:a@192.168.1.10:5070"
    assert m.get("from", ) is not None and "sip:pinger@example.com" in (m.get("from") or "")
    assert m.via1.branch and m.via1.branch.startswith("z9hG4bK")
    assert out[1][1] == b"\x00\x00\x00\x00"
    assert not p.due(0.0) and not p.due(29.0) and p.due(30.0) and not p.due(31.0)
    assert NatPinger(NathelperParams()).due(100.0) is False  # interval 0: off


def test_natping_tick_through_the_core(h: Harness) -> None:
    h.core.modules["nathelper"] = Nathelper.from_settings({
        "natping_interval": 10, "sipping_bflag": 7, "sipping_from": "sip:pinger@example.com"})
    h.location.save(binding("sip:a@127.0.0.1:5099", cflags=1 << 7))
    assert nathelper.natping_tick(h.core, 0.0) == 0  # arms the interval
    assert nathelper.natping_tick(h.core, 10.0) == 1
    (dest, m), = h.take()
    assert dest == Endpoint("udp", "127.0.0.1", 5099) and m.method == "OPTIONS"
    assert m.via1.sent_by() == "127.0.0.1:5060"


def test_nathelper_settings_errors() -> None:
    from siprouter.modules.modparam import ModparamError

    with pytest.raises(ModparamError, match=r"\[modules.nathelper\] natping_interval"):
        Nathelper.from_settings({"natping_interval": -1})
    with pytest.raises(ModparamError, match="sipping_from"):
        Nathelper.from_settings({"sipping_from": "not a uri"})


# -- corex, siputils ------------------------------------------------------------------------
def test_corex(h: Harness) -> None:
    r = req_of(h, msg(ruri="sip:bob@127.0.0.1", extra="User-Agent: x\r\n"))
    assert corex.has_ruri_user(r) == 1 and corex.has_user_agent(r) == 1
    r2 = req_of(h, msg())
    assert corex.has_ruri_user(r2) == -1 and corex.has_user_agent(r2) == -1
    assert corex.append_branch(r, "sip:carol@10.0.0.3") == 1
    assert corex.append_branch(r) == 1
    assert [b[0] for b in r.branches] == ["sip:carol@10.0.0.3", "sip:bob@127.0.0.1"]
    assert corex.append_branch(r, "bad uri") == -1
    assert corex.append_branch(r, "sip:x@y", "2.0") == -1
    assert corex.send_data(r, "sip:127.0.0.1:5099", "hello") == 1
    assert h.transport.sent[-1] == (Endpoint("udp", "127.0.0.1", 5099), b"hello")
    assert corex.send_data(r, "sip:no.such.host.invalid", "x") == -1


def test_siputils_uri_functions(h: Harness) -> None:
    r = req_of(h, msg(ruri="sip:+4930123@127.0.0.1;user=phone;lr"))
    assert siputils_uri.is_uri_user_e164(r, "sip:+4930123@x") == 1
    assert siputils_uri.is_uri_user_e164(r, "sip:4930123@x") == -1
    assert siputils_uri.is_uri_user_e164(r, "sip:+12@x") == 1
    assert siputils_uri.is_uri_user_e164(r, "sip:+1@x") == -1
    assert siputils_uri.is_uri_user_e164(r, "sip:+12345678901234567@x") == -1
    assert siputils_uri.uri_param(r, "lr") == 1 and siputils_uri.uri_param(r, "user") == -1
    assert siputils_uri.uri_param(r, "user", "phone") == 1
    assert siputils_uri.uri_param(r, "nope") == -1
    assert siputils_uri.add_uri_param(r, "foo=bar") == 1
    assert r.msg.ruri.endswith(";foo=bar")
    opt = req_of(h, msg())
    assert siputils_uri.options_reply(opt) == 1
    (_, m), = h.take()
    assert (m.status, m.reason, m.get("accept"), m.get("accept-language")) == (
        200, "OK", "*/*", "en")
    assert siputils_uri.options_reply(req_of(h, msg(method="INFO"))) == -1
    assert siputils_uri.options_reply(req_of(h, msg(ruri="sip:u@127.0.0.1"))) == -1


def test_rewrites_leave_the_shared_parses_unchanged(h: Harness) -> None:
    """parse_uri and parse_name_addr hand out shared objects (their caches): every function
    that rewrites a URI or a Contact changes a private copy, so the next parse of the same
    text still gives what the text says."""
    from siprouter.modules import pv, textops
    from siprouter.sip.headers import parse_name_addr
    from siprouter.sip.uri import parse_uri

    ruri = "sip:bob@192.0.2.7:5080"
    contact = "<sip:alice@192.168.1.10:5070>"
    before_uri = str(parse_uri(ruri))
    before_contact = parse_name_addr(contact).to_string()
    before_contact_uri = str(parse_uri("sip:alice@192.168.1.10:5070"))
    rewrites: list[Any] = [
        lambda r: pv.pv_set(r, "$rU", "carol"),
        lambda r: pv.pv_set(r, "$rd", "198.51.100.1"),
        lambda r: pv.pv_set(r, "$rp", 5090),
        lambda r: textops._subst_user(r, "/bob/dave/"),
        nathelper.fix_nated_contact,
        lambda r: nathelper.add_rcv_param(r, 0),
        lambda r: nathelper.add_rcv_param(r, 1),
        nathelper.add_contact_alias,
        lambda r: nathelper.set_contact_alias(r, 1),
    ]
    for fn in rewrites:
        r = req_of(h, msg(method="INVITE", ruri=ruri, contact=contact))
        before_msg = (r.msg.ruri, r.msg.get("contact"))
        fn(r)
        assert (r.msg.ruri, r.msg.get("contact")) != before_msg  # it did rewrite something
        assert str(parse_uri(ruri)) == before_uri
        assert parse_name_addr(contact).to_string() == before_contact
        assert str(parse_uri("sip:alice@192.168.1.10:5070")) == before_contact_uri


@pytest.mark.parametrize(("value", "rc", "after"), [
    ("70", 1, "69"), ("1", 1, "0"), ("0", -1, "0"), ("255", 1, "70"), ("007", 1, "6"),
    ("\xb2", -2, "\xb2"), ("1234", -2, "1234"), ("7a", -2, "7a"), ("", -2, ""),
])
def test_process_maxfwd(h: Harness, value: str, rc: int, after: str) -> None:
    """Kamailio's maxfwd: decrement (capped at max_limit 70), -1 at 0, -2 for a value that is
    not 1 to 3 ASCII digits (a superscript two is a digit to str.isdigit, not to SIP)."""
    r = req_of(h, msg().replace(b"Max-Forwards: 70", f"Max-Forwards: {value}".encode("latin-1")))
    before = r.msg.get("max-forwards")
    assert h.core.process_maxfwd(r.msg, 10) == rc
    assert r.msg.get("max-forwards") == (after if rc == 1 else before)
    if rc == 1:
        assert f"\r\nMax-Forwards: {after}\r\n".encode() in r.msg.to_bytes()
