"""Any header values give a RegisterResult (or a normalised AoR / ValueError), never a crash."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from siprouter.modules.location import Location, normalize_aor
from siprouter.modules.registrar import Registrar
from siprouter.sip.message import ParseError, parse_message

T0 = 1_700_000_000.0

# header-value text: printable, no CR/LF (those would end the header line)
value = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=60,
) | st.sampled_from(["*", "0", "<sip:a@1.1.1.1>;expires=0", "<sip:a@h>;q=0.5", "sip:a@h;expires=x"])


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80), use_domain=st.booleans())
def test_normalize_aor_total(text: str, use_domain: bool) -> None:
    try:
        key = normalize_aor(text, use_domain)
    except ValueError:
        return
    assert key
    if "%" not in text:  # unescaping may reveal new '%', '@' or ';' (a key is not re-escaped)
        assert normalize_aor(key, use_domain) == key


@settings(max_examples=300, deadline=None)
@given(to=value, contacts=st.lists(value, max_size=3), expires=st.none() | value, cseq=value)
def test_save_never_crashes(to: str, contacts: list[str], expires: str | None, cseq: str) -> None:
    lines = ["REGISTER sip:example.com SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
             f"To: {to}", "From: <sip:a@example.com>;tag=1", "Call-ID: fuzz",
             f"CSeq: {cseq} REGISTER"]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode("utf-8")
    try:
        msg = parse_message(data)
    except ParseError:
        return
    reg = Registrar(Location())
    res = reg.save(msg, T0)
    assert res.status in (200, 400, 404, 423, 500, 503)
    assert (res.code > 0) == (res.status == 200)
    if res.status == 200:
        assert res.aor is not None
        listed = [v for n, v in res.headers if n == "Contact"]
        assert len(listed) == len(reg.location.lookup(res.aor, T0))
    else:
        assert reg.location.count() == 0
