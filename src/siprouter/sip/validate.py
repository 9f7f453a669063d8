"""Validation of parsed messages: the rules a message can break after it has been framed.

``parse_message`` refuses what cannot be framed (bad start line, bad Content-Length, 505 for a
request of another SIP version ...). What frames but breaks a rule of RFC 3261 is found here:

``validate_request(msg)`` returns ``(status, reason)`` owed to the sender, or None when the
request is fit to process. In order:

1. SIP version other than 2.0 -> 505 (normally refused already by the parser);
2. a mandatory header missing (RFC 3261 §8.1.1: Via, From, To, Call-ID, CSeq; Max-Forwards only
   when ``require_max_forwards`` — RFC 3261 §16.3 step 3 lets a proxy pass a request without
   it, and RFC 4475 §3.4.1 keeps RFC 2543 requests without it valid) -> 400 naming it;
3. a single-valued header given more than once (RFC 4475 §3.3.8) -> 400 naming it;
4. a header value that does not parse: Via, From, To, Call-ID, CSeq, Max-Forwards,
   Contact, Route, Record-Route -> 400 naming it;
5. CSeq method different from the request method (RFC 3261 §8.1.1.5, RFC 4475 §3.1.2.17)
   -> 400;
6. the Request-URI: a scheme other than sip/sips/tel -> 416 (RFC 3261 §8.2.2.1); a
   malformed sip/sips/tel URI -> 400; a SIP URI carrying headers (not allowed in a
   Request-URI, RFC 3261 §19.1.1 table 1; RFC 4475 §3.1.2.11) -> 400.

Policy answers that need configuration are left to the layer that has it: 483 for
Max-Forwards 0 (proxy), 420 for unsupported Proxy-Require options (see
``unsupported_proxy_require``), 415 / 406 for bodies (UAS), the REGISTER rules (registrar).

``validate_response(msg)`` says whether a response is fit to process; a response that is not
is dropped silently (no response is sent to a response; RFC 4475 §3.1.2.5).

Both functions only read the message and never raise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeVar

from ..native import native
from .charset import ALNUM, char_table, chars_in
from .headers import parse_contacts, parse_cseq, parse_name_addr, parse_name_addr_list
from .message import _from_wire, is_ascii
from .uri import UnsupportedURIScheme, parse_uri

if TYPE_CHECKING:  # pragma: no cover
    from .message import SipMessage

__all__ = ["memo_key", "remember", "unsupported_proxy_require", "validate_request",
           "validate_response"]

# RFC 3261 §25.1: callid = word [ "@" word ]; word = 1*(alphanum / "-" / "." / "!" / "%" /
# "*" / "_" / "+" / "`" / "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" /
# "]" / "?" / "{" / "}")
_WORD_CHARS: Final = char_table(ALNUM + "-.!%*_+`'~()<>:\\\"/[]?{}")

_SIP_SCHEMES: Final = ("sip:", "sips:", "tel:")

# True for a name-addr of the common ``<sip:user@host:port;k=v>;k=v`` form, which every check
# below accepts; None for any other (then they decide). In C when built.
_c_name_addr_ok: Final[Callable[[str], bool | None] | None] = native(
    "siprouter.sip._scan", "name_addr_ok"
)


def _common_name_addr(value: str) -> bool:
    """``value`` is a name-addr of the common form (see ``_c_name_addr_ok``): a From/To
    value, a Route list of one and a single Contact that every check below accepts."""
    return _c_name_addr_ok is not None and _c_name_addr_ok(value) is not None


def _bad(name: str) -> tuple[int, str]:
    return 400, f"Bad {name} Header Field"


# Fast path for the forms nearly every UA sends: ``[token... | "quoted"] <uri>;params`` and a
# bare ``sip:user@host;params``. A value that does not match is checked by the full parser, so
# the fast path only ever accepts what the full parser accepts too (the URI inside is parsed).
_T = r"[A-Za-z0-9\-.!%*_+`'~]+"
_FAST_NA_RE: Final = re.compile(
    rf'(?:"[^"\\\r\n]*"[ \t]*|{_T}(?:[ \t]+{_T})*[ \t]*)?<((?:sips?|tel):[^\s<>"]+)>'
    rf"((?:[ \t]*;[ \t]*{_T}(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]@]+)?)*)[ \t]*"
)
_FAST_ITEM = r"<sips?:[^\s<>\",]+>(?:;[A-Za-z0-9\-.!%*_+`'~=]+)*"
_FAST_LIST_RE: Final = re.compile(rf"{_FAST_ITEM}(?:, ?{_FAST_ITEM})*")
_ANGLE_RE: Final = re.compile(r"<([^<>]+)>")


def _fast_uri_list(value: str) -> bool:
    """True when a Route/Record-Route value is simple ``<uri>;params, ...`` with good URIs."""
    if _FAST_LIST_RE.fullmatch(value) is None:
        return False
    try:
        for m in _ANGLE_RE.finditer(value):
            parse_uri(m.group(1))
    except ValueError:
        return False
    return True


def _fast_name_addr(value: str) -> bool | None:
    """True/False when the fast path can decide, None to fall back to the full parser."""
    m = _FAST_NA_RE.fullmatch(value)
    if m is None:
        return None
    try:
        parse_uri(m.group(1))
    except ValueError:
        return False
    return True


def _check_name_addr_uncached(value: str) -> bool:
    fast = _fast_name_addr(value)
    if fast is not None:
        return fast
    try:
        na = parse_name_addr(value)
        if na.uri[:5].lower().startswith(_SIP_SCHEMES):
            parse_uri(na.uri)
    except ValueError:
        return False
    return True


def _uri_list_ok(value: str) -> bool:
    if _fast_uri_list(value):
        return True
    try:
        parse_name_addr_list(value)
    except ValueError:
        return False
    return True


# The verdicts on header values, remembered: the checks are pure functions of the text, and
# the same From, To, Route and Contact values come back in every request of a dialog (and in
# retransmissions). Bounded in entries and in the length of a value remembered.
#
# From, To and Route values are remembered under their ``_memo_key``: the text with two runs of
# [A-Za-z0-9._-] taken out, the user part after the first "sip:" (when "@" follows it) and the
# value of the first "tag=". The user changes from one REGISTER to the next, the From tag, the
# To tag and the ftag of our own Record-Route with every dialog; the rest of the value does not.
# Replacing such a run by another (in a user part, a header or URI parameter, a quoted string)
# does not change whether the value parses, so the verdict holds for every value with the same
# key. A key has "sip:@" at its first "sip:" exactly when a user run was taken out, and "tag="
# exactly when a tag run was (a marker followed by no run gives no key at all): two values with
# one key differ only in those runs.
_MEMO_MAX_ENTRIES: Final = 4096
_MEMO_MAX_LEN: Final = 256
_name_addr_memo: Final[dict[str, bool]] = {}
_uri_list_memo: Final[dict[str, bool]] = {}
_cseq_memo: Final[dict[str, bool]] = {}
_contact_memo: Final[dict[str, bool]] = {}  # keys of single Contact values the fast path accepted

_RUN_RE: Final = re.compile(r"[A-Za-z0-9._-]*")


def _cut_run(value: str, marker: str, need_at: bool) -> str | None:
    at = value.find(marker)
    if at < 0:
        return value
    i = at + len(marker)
    m = _RUN_RE.match(value, i)
    assert m is not None  # the pattern matches the empty string
    j = m.end()
    if need_at and value[j : j + 1] != "@":
        return value
    if j == i:
        return None
    return value[:i] + value[j:]


def _memo_key_py(value: str) -> str | None:
    """What ``siprouter.sip._scan.memo_key`` does in C, when it is built: the key, or None
    (remember nothing)."""
    mid = _cut_run(value, "sip:", True)
    return None if mid is None else _cut_run(mid, "tag=", False)


_memo_key: Final[Callable[[str], str | None]] = (
    native("siprouter.sip._scan", "memo_key") or _memo_key_py
)


def memo_key(value: str) -> str | None:
    """The key under which a fact about a From, To, Route or Record-Route value that depends
    neither on its user part nor on its tag/ftag value may be remembered (see above); None
    when nothing may be remembered."""
    return _memo_key(value)


_Fact = TypeVar("_Fact")


def remember(memo: dict[str, _Fact], key: str, fact: _Fact) -> None:
    """``memo[key] = fact`` within the memos' bounds (entries, and the length of a key)."""
    if len(key) <= _MEMO_MAX_LEN:
        if len(memo) >= _MEMO_MAX_ENTRIES:
            memo.clear()
        memo[key] = fact


def _verdict(
    memo: dict[str, bool], key: str | None, value: str, check: Callable[[str], bool]
) -> bool:
    """``check(value)``, remembered in ``memo`` under ``key`` (None: not remembered)."""
    if key is None:
        return check(value)
    known = memo.get(key)
    if known is not None:
        return known
    verdict = check(value)
    remember(memo, key, verdict)
    return verdict


_c_call_id_ok: Final[Callable[[str], bool] | None] = native("siprouter.sip._scan", "call_id_ok")


def _call_id_ok(value: str) -> bool:
    if _c_call_id_ok is not None:
        return _c_call_id_ok(value)
    return _call_id_ok_py(value)


def _call_id_ok_py(value: str) -> bool:
    """:func:`_call_id_ok` in Python (``siprouter.sip._scan.call_id_ok`` when built)."""
    at = value.find("@")
    if at < 0:
        return chars_in(value, _WORD_CHARS)
    # "@" is not a word character: a second one fails the check of the second word
    return chars_in(value[:at], _WORD_CHARS) and chars_in(value[at + 1 :], _WORD_CHARS)


def _cseq_ok(value: str) -> bool:
    try:
        parse_cseq(value)
    except ValueError:
        return False
    return True


# the uncached checks as C statics of the compiled module (a function named as a value is a
# globals lookup each time)
_NAME_ADDR_CHECK: Final = _check_name_addr_uncached
_URI_LIST_CHECK: Final = _uri_list_ok
_CSEQ_CHECK: Final = _cseq_ok


def _check_name_addr(value: str) -> bool:
    """A From/To value: name-addr syntax, and a parseable URI when it is sip/sips/tel."""
    if _common_name_addr(value):
        return True
    return _verdict(_name_addr_memo, _memo_key(value), value, _NAME_ADDR_CHECK)


def _check_uri_list(value: str) -> bool:
    """A Route/Record-Route value: a list of name-addrs."""
    if _common_name_addr(value):
        return True  # a list of one
    return _verdict(_uri_list_memo, _memo_key(value), value, _URI_LIST_CHECK)


def _contact_fast_ok(value: str) -> bool:
    """A single Contact value the fast path accepts (remembered; anything else is for the full
    parser, which also names the error)."""
    if _common_name_addr(value):
        return True
    key = _memo_key(value)
    if key is not None and key in _contact_memo:
        return True
    if _fast_name_addr(value) is not True:
        return False
    if key is not None:
        remember(_contact_memo, key, True)
    return True


def _check_cseq(value: str) -> bool:
    return _verdict(_cseq_memo, value, value, _CSEQ_CHECK)


class _Seen:
    """What one pass over the header lines collects (values in caller form, see
    ``SipMessage.get``). One attribute and one branch per header rather than tables: this runs
    for every request, and the table form (dicts, a set, tuple loops) cost a third more
    instructions in validation (callgrind under SIPp)."""

    __slots__ = ("call_id", "contacts", "cseq", "frm", "max_forwards", "n_call_id", "n_cseq",
                 "n_from", "n_max_forwards", "n_to", "record_routes", "routes", "to", "via")

    def __init__(self) -> None:
        self.via = False
        self.frm: str | None = None
        self.to: str | None = None
        self.call_id: str | None = None
        self.cseq: str | None = None
        self.max_forwards: str | None = None
        self.n_from = 0
        self.n_to = 0
        self.n_call_id = 0
        self.n_cseq = 0
        self.n_max_forwards = 0
        self.contacts: list[str] = []
        self.routes: list[str] = []
        self.record_routes: list[str] = []


def _collect(msg: SipMessage) -> _Seen:
    """One pass over the header lines (rather than a scan per header asked for)."""
    seen = _Seen()
    ascii_only = msg._ascii
    for h in msg._hdrs:
        c = h[0]
        v = h[1]
        assert v is not None
        if not ascii_only and not is_ascii(v):
            v = _from_wire(v)
        if c == "via":
            seen.via = True
        elif c == "from":
            seen.n_from += 1
            if seen.frm is None:
                seen.frm = v
        elif c == "to":
            seen.n_to += 1
            if seen.to is None:
                seen.to = v
        elif c == "call-id":
            seen.n_call_id += 1
            if seen.call_id is None:
                seen.call_id = v
        elif c == "cseq":
            seen.n_cseq += 1
            if seen.cseq is None:
                seen.cseq = v
        elif c == "max-forwards":
            seen.n_max_forwards += 1
            if seen.max_forwards is None:
                seen.max_forwards = v
        elif c == "contact":
            seen.contacts.append(v)
        elif c == "route":
            seen.routes.append(v)
        elif c == "record-route":
            seen.record_routes.append(v)
    return seen


def _common(msg: SipMessage, seen: _Seen) -> tuple[int, str] | None:
    """Checks shared by requests and responses (status 400 with the reason)."""
    if not seen.via:
        return 400, "Missing Via Header Field"
    if seen.frm is None:
        return 400, "Missing From Header Field"
    if seen.to is None:
        return 400, "Missing To Header Field"
    if seen.call_id is None:
        return 400, "Missing Call-ID Header Field"
    if seen.cseq is None:
        return 400, "Missing CSeq Header Field"
    if seen.n_from > 1:
        return 400, "Multiple From Header Fields"
    if seen.n_to > 1:
        return 400, "Multiple To Header Fields"
    if seen.n_call_id > 1:
        return 400, "Multiple Call-ID Header Fields"
    if seen.n_cseq > 1:
        return 400, "Multiple CSeq Header Fields"
    if seen.n_max_forwards > 1:
        return 400, "Multiple Max-Forwards Header Fields"
    try:
        msg.vias  # noqa: B018 - parses (and caches) every Via
    except ValueError:
        return _bad("Via")
    if not _check_name_addr(seen.frm):
        return _bad("From")
    if not _check_name_addr(seen.to):
        return _bad("To")
    if not _call_id_ok(seen.call_id):
        return _bad("Call-ID")
    try:
        msg.cseq_num  # noqa: B018 - parses (and caches) the CSeq
    except ValueError:
        return _bad("CSeq")
    if not _check_cseq(seen.cseq):
        return _bad("CSeq")
    return None


def validate_request(
    msg: SipMessage, *, require_max_forwards: bool = False
) -> tuple[int, str] | None:
    """``(status, reason)`` owed for a request that breaks a rule, else None."""
    try:
        return _validate_request(msg, require_max_forwards)
    except ValueError:  # a header accessor refusing a value we did not foresee
        return 400, "Bad Request"


def _validate_request(msg: SipMessage, require_max_forwards: bool) -> tuple[int, str] | None:
    if msg.version != "SIP/2.0":
        return 505, "Version Not Supported"
    seen = _collect(msg)
    if require_max_forwards and seen.max_forwards is None:
        return 400, "Missing Max-Forwards Header Field"
    err = _common(msg, seen)
    if err is not None:
        return err
    if msg.cseq_method != msg.method:
        return 400, "CSeq Method Does Not Match Request Method"
    mf = seen.max_forwards
    if mf is not None and (not mf.isdigit() or not is_ascii(mf) or len(mf) > 10 or int(mf) > 255):
        return _bad("Max-Forwards")
    contacts = seen.contacts
    if contacts and not (len(contacts) == 1 and _contact_fast_ok(contacts[0])):
        try:
            parse_contacts(contacts)
        except ValueError:
            return _bad("Contact")
    for v in seen.routes:
        if not _check_uri_list(v):
            return _bad("Route")
    for v in seen.record_routes:
        if not _check_uri_list(v):
            return _bad("Record-Route")
    try:
        uri = parse_uri(msg.ruri)
    except UnsupportedURIScheme:
        return 416, "Unsupported URI Scheme"
    except ValueError:
        return 400, "Bad Request-URI"
    if uri.headers:
        return 400, "Request-URI Must Not Carry Headers"
    return None


def validate_response(msg: SipMessage) -> bool:
    """True when a response is fit to process; False means drop it silently."""
    try:
        if msg.is_request or not 100 <= msg.status <= 699 or msg.version != "SIP/2.0":
            return False
        return _common(msg, _collect(msg)) is None
    except ValueError:
        return False


def unsupported_proxy_require(msg: SipMessage, supported: frozenset[str]) -> list[str]:
    """Option tags of Proxy-Require not in ``supported`` (RFC 3261 §16.3 step 5: a proxy
    answers 420 Bad Extension listing them in Unsupported). Comparison is case-sensitive
    as option tags are (RFC 3261 §19.2)."""
    return [tag for tag in msg.values("proxy-require") if tag not in supported]
