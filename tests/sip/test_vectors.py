"""RFC 4475 and RFC 5118 torture messages: what the RFC says about each file, checked.

Each row: file, RFC section, expected outcome, note. The outcome of a message is

- ``None``: it parses and validates (a request gets no error status, a response is fit);
- a status (400, 416, 505 ...): ``parse_message`` raises ``ParseError`` with that status, or
  the message parses and ``validate_request`` owes that status — the RFC does not say at which
  step an element finds the fault, only what it answers;
- ``DROP``: no answer at all (``ParseError`` status 0, or ``validate_response`` is False).

Where the RFC allows either rejection or liberal acceptance, the note says which one we chose.
Messages go in as UDP datagrams (``stream=False``), as the RFC's own notes assume.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from siprouter.sip.headers import parse_contacts, parse_name_addr
from siprouter.sip.message import ParseError, SipMessage, parse_message
from siprouter.sip.uri import parse_uri
from siprouter.sip.validate import unsupported_proxy_require, validate_request, validate_response

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
DROP = 0

# (file, RFC 4475 section, expected outcome, note)
RFC4475: list[tuple[str, str, int | None, str]] = [
    ("wsinv.dat", "3.1.1.1", None, "short tortuous INVITE"),
    ("intmeth.dat", "3.1.1.2", None, "wide range of valid characters"),
    ("esc01.dat", "3.1.1.3", None, "valid % escaping"),
    ("escnull.dat", "3.1.1.4", None, "escaped NULs in URIs"),
    ("esc02.dat", "3.1.1.5", None, "% that is not an escape"),
    ("lwsdisp.dat", "3.1.1.6", None, "no LWS between display name and <"),
    ("longreq.dat", "3.1.1.7", None, "long header values"),
    ("dblreq.dat", "3.1.1.8", None, "extra octets after Content-Length in a datagram"),
    ("semiuri.dat", "3.1.1.9", None, "';' in the user part"),
    ("transports.dat", "3.1.1.10", None, "varied and unknown transports"),
    ("mpart01.dat", "3.1.1.11", None, "multipart MIME body"),
    ("unreason.dat", "3.1.1.12", None, "unusual reason phrase"),
    ("noreason.dat", "3.1.1.13", None, "empty reason phrase"),
    ("badinv01.dat", "3.1.2.1", 400, "extraneous header field separators"),
    ("clerr.dat", "3.1.2.2", 400, "Content-Length larger than the datagram's body"),
    ("ncl.dat", "3.1.2.3", 400, "negative Content-Length"),
    ("scalar02.dat", "3.1.2.4", 400, "overlarge CSeq (the RFC: 400 due to the CSeq)"),
    ("scalarlg.dat", "3.1.2.5", DROP, "response with overlarge scalars: discard"),
    ("quotbal.dat", "3.1.2.6", 400, "unterminated quoted display name"),
    ("ltgtruri.dat", "3.1.2.7", 400, "<> around the Request-URI"),
    ("lwsruri.dat", "3.1.2.8", 400, "LWS inside the Request-URI"),
    ("lwsstart.dat", "3.1.2.9", 400, "multiple SP in the Request-Line (reject allowed; chosen)"),
    ("trws.dat", "3.1.2.10", 400, "SP at end of Request-Line (reject allowed; chosen)"),
    ("escruri.dat", "3.1.2.11", 400, "escaped headers in the Request-URI (reject allowed; chosen)"),
    ("baddate.dat", "3.1.2.12", None, "non-GMT Date (reject or accept; a proxy ignores Date)"),
    ("regbadct.dat", "3.1.2.13", 400, "Contact addr-spec with '?' outside <>"),
    ("badaspec.dat", "3.1.2.14", 400, "spaces inside <> (reject allowed; chosen)"),
    ("baddn.dat", "3.1.2.15", 400, "non-token characters in an unquoted display name"),
    ("badvers.dat", "3.1.2.16", 505, "unknown protocol version"),
    ("mismatch01.dat", "3.1.2.17", 400, "start line and CSeq method differ"),
    ("mismatch02.dat", "3.1.2.18", 400, "unknown method and CSeq mismatch (400 or 501)"),
    ("bigcode.dat", "3.1.2.19", DROP, "overlarge response code: drop"),
    ("badbranch.dat", "3.2.1", None, "branch 'z9hG4bK' only (400 or RFC 2543 fallback; accepted)"),
    ("insuf.dat", "3.3.1", 400, "missing required header fields"),
    ("unkscm.dat", "3.3.2", 416, "unknown Request-URI scheme"),
    ("novelsc.dat", "3.3.3", 416, "known but atypical scheme we never accept"),
    ("unksm2.dat", "3.3.4", None, "unknown schemes in To/From/Contact (registrar rejects later)"),
    ("bext01.dat", "3.3.5", None, "unsupported Require/Proxy-Require: 420 from proxy / UAS"),
    ("invut.dat", "3.3.6", None, "unknown Content-Type: 415 from a UAS, a proxy forwards"),
    ("regaut01.dat", "3.3.7", None, "unknown Authorization scheme"),
    ("multi01.dat", "3.3.8", 400, "several values in single-value fields"),
    ("mcl01.dat", "3.3.9", 400, "several Content-Length values"),
    ("bcast.dat", "3.3.10", None, "200 OK with a broadcast sent-by in the 2nd Via"),
    ("zeromf.dat", "3.3.11", None, "Max-Forwards 0: valid; a proxy answers 483"),
    ("cparam01.dat", "3.3.12", None, "REGISTER, Contact header parameter"),
    ("cparam02.dat", "3.3.13", None, "REGISTER, Contact URI parameter"),
    ("regescrt.dat", "3.3.14", None, "REGISTER, Contact URI with an escaped header"),
    ("sdp01.dat", "3.3.15", None, "unacceptable Accept: 406 from a UAS"),
    ("inv2543.dat", "3.4.1", None, "RFC 2543 syntax: no branch, tag, Max-Forwards, CL"),
    ("test.dat", "-", 400, "not in the RFC text; Request-Line without SIP version"),
]

# (file, RFC 5118 section, expected outcome, note)
RFC5118: list[tuple[str, str, int | None, str]] = [
    ("ipv6-good.dat", "4.1", None, "IPv6 reference in the Request-URI"),
    ("ipv6-bad.dat", "4.2", 400, "IPv6 address without brackets in the Request-URI"),
    ("port-ambiguous.dat", "4.3", None, "[2001:db8::10:5070] is an address, no port"),
    ("port-unambiguous.dat", "4.4", None, "[2001:db8::10]:5070 is address and port"),
    ("via-received-param-with-delim.dat", "4.5", None, "received=[IPv6]"),
    ("via-received-param-no-delim.dat", "4.5", None, "received=IPv6"),
    ("ipv6-in-sdp.dat", "4.6", None, "IPv6 in SDP"),
    ("mult-ip-in-header.dat", "4.7", None, "IPv4 and IPv6 in one message"),
    ("mult-ip-in-sdp.dat", "4.8", None, "IPv4 and IPv6 in SDP"),
    ("ipv4-mapped-ipv6.dat", "4.9", None, "IPv4-mapped IPv6 addresses"),
    ("ipv6-bug-abnf-3-colons.dat", "4.10", None, "RFC 3261 ABNF bug: must be tolerated"),
    ("ipv6-correct-abnf-2-colons.dat", "4.10", None, "the correct form"),
]

# Known departures of the parser from the table above: file -> reason (xfail, strict).
PARSER_GAPS: dict[str, str] = {}


def outcome(data: bytes) -> int | None:
    """What the RFC cares about: None (accept), a status owed, or DROP."""
    try:
        msg = parse_message(data)
    except ParseError as e:
        return e.status
    if msg.is_request:
        err = validate_request(msg)
        return None if err is None else err[0]
    return None if validate_response(msg) else DROP


def rfc5118_wire(raw: bytes) -> bytes:
    """The message RFC 5118 means, from its archive file: CRLF line ends, the empty line that
    closes the header section, and a Content-Length equal to the body carried."""
    head, sep, body = raw.partition(b"\n\n")
    head = head.rstrip(b"\n")
    body = body.replace(b"\n", b"\r\n") if sep else b""
    lines = head.split(b"\n")
    lines = [
        re.sub(rb"^(Content-Length|l)\s*:.*$", b"Content-Length: %d" % len(body), ln, flags=re.I)
        for ln in lines
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _param(rows: list[tuple[str, str, int | None, str]]) -> list[object]:
    out: list[object] = []
    for name, section, expected, note in rows:
        marks = []
        if name in PARSER_GAPS:
            marks.append(pytest.mark.xfail(strict=True, reason=PARSER_GAPS[name]))
        out.append(pytest.param(name, section, expected, note, id=name, marks=marks))
    return out


def test_tables_cover_every_file() -> None:
    assert sorted(p.name for p in (VECTORS / "rfc4475").glob("*.dat")) == sorted(
        r[0] for r in RFC4475
    )
    assert sorted(p.name for p in (VECTORS / "rfc5118").glob("*.dat")) == sorted(
        r[0] for r in RFC5118
    )


@pytest.mark.parametrize(("name", "section", "expected", "note"), _param(RFC4475))
def test_rfc4475(name: str, section: str, expected: int | None, note: str) -> None:
    data = (VECTORS / "rfc4475" / name).read_bytes()
    assert outcome(data) == expected, f"RFC 4475 §{section} ({note})"


def test_rfc4475_baddn_with_complete_header_section() -> None:
    # The archived file lacks the closing empty line; the fault the RFC describes (§3.1.2.15)
    # must be found on its own too.
    data = (VECTORS / "rfc4475" / "baddn.dat").read_bytes() + b"\r\n"
    msg = parse_message(data)
    assert validate_request(msg) == (400, "Bad From Header Field")


@pytest.mark.parametrize(("name", "section", "expected", "note"), _param(RFC5118))
def test_rfc5118(name: str, section: str, expected: int | None, note: str) -> None:
    raw = (VECTORS / "rfc5118" / name).read_bytes()
    assert outcome(rfc5118_wire(raw)) == expected, f"RFC 5118 §{section} ({note})"


@pytest.mark.parametrize("path", sorted(VECTORS.glob("rfc*/*.dat")), ids=lambda p: p.name)
def test_archived_bytes_never_crash(path: Path) -> None:
    data = path.read_bytes()
    for stream in (False, True):
        try:
            msg = parse_message(data, stream=stream)
        except ParseError:
            continue
        assert isinstance(msg, SipMessage)
        if msg.is_request:
            validate_request(msg)
        else:
            validate_response(msg)


# ---- a few facts the RFC text states about particular messages ---------------------------


def _msg(folder: str, name: str) -> SipMessage:
    raw = (VECTORS / folder / name).read_bytes()
    return parse_message(rfc5118_wire(raw) if folder == "rfc5118" else raw)


def test_facts_rfc4475() -> None:
    # §3.1.1.3: the Request-URI user part is an escaped SIPS URI
    assert parse_uri(_msg("rfc4475", "esc01.dat").ruri).user == "sips%3Auser%40example.com"
    # §3.1.1.5: two Contact values, not three; the method is not REGISTER
    esc02 = _msg("rfc4475", "esc02.dat")
    assert esc02.method == "RE%47IST%45R"
    contacts = parse_contacts(esc02.get_all("contact"))
    assert contacts != "*" and len(contacts) == 2
    # §3.1.1.6
    assert parse_name_addr(_msg("rfc4475", "lwsdisp.dat").get("from") or "").display == "caller"
    # §3.1.1.8: the REGISTER is the message; the INVITE after it is discarded
    dbl = _msg("rfc4475", "dblreq.dat")
    assert dbl.method == "REGISTER" and dbl.body == b""
    # §3.1.1.9
    assert parse_uri(_msg("rfc4475", "semiuri.dat").ruri).user == "user;par=u%40example.net"
    # §3.1.1.10
    vias = _msg("rfc4475", "transports.dat").vias
    assert [v.transport for v in vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    # §3.1.1.7: 34 Via values
    assert len(_msg("rfc4475", "longreq.dat").vias) == 34
    # §3.2.1
    assert _msg("rfc4475", "badbranch.dat").via1.branch == "z9hG4bK"
    # §3.3.5: both Proxy-Require options are unknown to a proxy supporting nothing
    assert unsupported_proxy_require(_msg("rfc4475", "bext01.dat"), frozenset()) == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]
    # §3.3.10
    assert _msg("rfc4475", "bcast.dat").vias[1].host == "255.255.255.255"
    # §3.3.12 / §3.3.13: header parameter vs URI parameter
    c1 = parse_contacts(_msg("rfc4475", "cparam01.dat").get_all("contact"))
    assert c1 != "*" and c1[0].params == {"unknownparam": None}
    assert c1[0].uri == "sip:+19725552222@gw1.example.net"
    c2 = parse_contacts(_msg("rfc4475", "cparam02.dat").get_all("contact"))
    assert c2 != "*" and c2[0].params == {}
    assert parse_uri(c2[0].uri).params == {"unknownparam": None}
    # §3.3.14: the escaped Route stays a URI header of the Contact
    c3 = parse_contacts(_msg("rfc4475", "regescrt.dat").get_all("contact"))
    assert c3 != "*" and parse_uri(c3[0].uri).headers == {"Route": "%3Csip:sip.example.com%3E"}
    # §3.4.1: no branch, no From tag, body to the end of the datagram
    old = _msg("rfc4475", "inv2543.dat")
    assert old.via1.branch is None and old.from_tag is None
    assert old.body.startswith(b"v=0") and old.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")


def test_facts_rfc5118() -> None:
    # §4.3 / §4.4
    amb = parse_uri(_msg("rfc5118", "port-ambiguous.dat").ruri)
    assert (amb.host, amb.port) == ("2001:db8::10:5070", None)
    una = parse_uri(_msg("rfc5118", "port-unambiguous.dat").ruri)
    assert (una.host, una.port) == ("2001:db8::10", 5070)
    # §4.5
    assert _msg("rfc5118", "via-received-param-no-delim.dat").via1.received == "2001:db8::9:255"
    with_delim = _msg("rfc5118", "via-received-param-with-delim.dat").via1
    assert with_delim.received == "[2001:db8::9:255]"
    # §4.7
    hosts = [v.host for v in _msg("rfc5118", "mult-ip-in-header.dat").vias]
    assert hosts == ["2001:db8::9:1", "192.0.2.1", "2001:db8::9:255"]
    # §4.9
    mapped = _msg("rfc5118", "ipv4-mapped-ipv6.dat").vias
    assert [(v.host, v.port) for v in mapped] == [
        ("::ffff:192.0.2.10", 19823),
        ("::ffff:192.0.2.2", None),
    ]
