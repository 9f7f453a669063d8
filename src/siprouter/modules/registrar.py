"""Registrar: REGISTER semantics (RFC 3261 §10.3, RFC 3327 Path, RFC 5626 instance/reg-id).

Sans-IO: :meth:`Registrar.save` takes a parsed REGISTER and ``now`` and returns a
:class:`RegisterResult` -- status, reason and the header lines of the reply; the caller builds and
sends the reply. The bindings themselves live in :class:`~siprouter.modules.location.Location`.

Rules of :meth:`Registrar.save`, in the order RFC 3261 §10.3 gives them:

1. The AoR comes from the To header (or the ``aor`` argument, like Kamailio's ``save(table, flags,
   uri)``). It must be a sip: or sips: URI with a user part: unparsable -> 400, another scheme
   (tel:, ...) -> 404, as step 3 answers an AoR the registrar does not serve.
2. No Contact -> a fetch: 200 listing the current bindings, nothing changes.
3. ``Contact: *`` must be the only contact and come with ``Expires: 0`` (else 400); it removes
   every binding of the AoR, subject to the Call-ID/CSeq rule below.
4. Per contact, the expiry is its ``expires`` parameter, else the Expires header, else
   ``default_expires``. 0 removes the binding; 0 < expires < ``min_expires`` rejects the whole
   request with 423 and Min-Expires (step 7); above ``max_expires`` it is lowered to it.
   ``q`` must be 0..1 (else 400).
5. A contact matches a binding by ``+sip.instance``+``reg-id`` when both are given (RFC 5626),
   else by ``+sip.instance`` alone, else by URI (exact text first, then RFC 3261 §19.1.4
   comparison). For a match with the *same* Call-ID the CSeq must be higher than the stored one,
   otherwise "the update MUST be aborted and the request fails" (§10.3 step 7): the whole
   REGISTER is answered 500 and nothing changes. (Kamailio answers 400 "Invalid CSeq number"
   here; RFC 3261 uses 500 for out-of-order requests, §12.2.2, and so do we.) A *different*
   Call-ID means the UA restarted: the binding is replaced (or removed, for expires 0).
6. With ``max_contacts`` > 0, a request that would leave more bindings than that is answered
   503 "Too Many Registered Contacts" (Kamailio's R_TOO_MANY) and nothing changes.
7. The changes go to the location table in one store transaction *before* the result is
   returned; a store failure is answered 500 with nothing changed.
8. 200 lists every current binding of the AoR (``Contact: <uri>;expires=N[;q=..]``), with Date;
   Path is echoed when the UA declared ``Supported: path`` (RFC 3327 §5.3).

``RegisterResult.code`` follows Kamailio's ``save()``: 1 success, -1 error (a reply is still owed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final, NamedTuple

from siprouter.modules.aor import aor_key, normalize_aor
from siprouter.modules.location import Location
from siprouter.sip.headers import NameAddr, parse_contacts, parse_name_addr
from siprouter.sip.message import SipMessage
from siprouter.sip.uri import SipURI, UnsupportedURIScheme, check_uri, parse_uri, uri_equal
from siprouter.storage.location_store import Binding, StoreError

__all__ = [
    "REG_ERROR", "REG_OK", "Branch", "RegisterResult", "Registrar", "RegistrarSettings",
    "received_to_uri",
]

log = logging.getLogger(__name__)

REG_OK = 1
REG_ERROR = -1

# RFC 3261 §20.19 / §10.2.1.1: an expiration above 2**32-1 is taken as 2**32-1.
_MAX_DELTA: Final = 2**32 - 1


@dataclass(slots=True)
class RegistrarSettings:
    # Kamailio registrar modparam default_expires = 3600; RFC 3261 §10.2.1.1 likewise suggests
    # one hour when the UA states no expiry.
    default_expires: int = 3600
    # Kamailio registrar modparam min_expires = 60; RFC 3261 §10.3 step 7 lets the registrar
    # refuse shorter intervals with 423 (Kamailio coerces them instead unless told otherwise).
    min_expires: int = 60
    # Kamailio's max_expires defaults to 0 (no cap); we cap at one day so a binding cannot
    # outlive its device forever by a mistyped Expires (RFC 3261 §10.3 step 7 allows lowering).
    # 0 disables the cap.
    max_expires: int = 86400
    # Kamailio registrar modparam max_contacts = 0: unlimited bindings per AoR.
    max_contacts: int = 0
    # Kamailio usrloc modparam use_domain = 0: the AoR is the user part only. Must agree with
    # the Location table's use_domain.
    use_domain: bool = False

    def __post_init__(self) -> None:
        if self.default_expires < 0 or self.min_expires < 0 or self.max_expires < 0:
            raise ValueError("registrar expires settings must not be negative")
        if self.max_expires and self.min_expires > self.max_expires:
            raise ValueError("registrar min_expires is above max_expires")
        if self.max_contacts < 0:
            raise ValueError("registrar max_contacts must not be negative")


class RegisterResult:
    """What to answer a REGISTER with."""

    __slots__ = ("aor", "bindings", "code", "headers", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        code: int,
        aor: str | None = None,
        bindings: list[Binding] | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers                # reply header lines, in order
        self.code = code                      # Kamailio save(): 1 ok, -1 error
        self.aor = aor                        # the location key, when it could be determined
        self.bindings = [] if bindings is None else bindings  # current bindings after the save

    @property
    def ok(self) -> bool:
        return self.code > 0

    def __repr__(self) -> str:
        return f"RegisterResult({self.status} {self.reason!r}, code={self.code}, aor={self.aor!r})"


class Branch(NamedTuple):
    """One target for forking a request to a registered AoR (Kamailio's lookup() branches)."""

    uri: str                  # the new Request-URI: the registered contact
    dst_uri: str | None       # where to send it: the NAT source (received) when no Path applies
    route: tuple[str, ...]    # Path values to push as Route headers (RFC 3327 §5.4), in order
    q: float
    socket: str | None        # local listener the binding came in on ("proto:host:port")
    flags: int                # the binding's cflags: branch flags to restore
    instance: str | None


def received_to_uri(received: str) -> str:
    """A ``received`` value as a SIP URI usable as destination.

    ``"udp:198.51.100.7:5060"`` -> ``"sip:198.51.100.7:5060"``; other transports add
    ``;transport=``; IPv6 hosts are bracketed; a value that already is a sip:/sips: URI is
    returned as is. ``ValueError`` for anything else."""
    low = received[:5].lower()
    if low.startswith(("sip:", "sips:")):
        return received
    proto, sep, rest = received.partition(":")
    proto = proto.lower()
    host, sep2, port = rest.rpartition(":")
    if not sep or not sep2 or not host or not port.isdigit() or int(port) > 65535 \
            or proto not in ("udp", "tcp", "tls", "sctp", "ws", "wss"):
        raise ValueError(f"bad received address {received!r} (expected proto:host:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        host = f"[{host}]"
    if proto == "udp":
        return f"sip:{host}:{port}"
    return f"sip:{host}:{port};transport={proto}"


_date_cache: Final[list[tuple[int, str]]] = [(-1, "")]


def _date(now: float) -> str:
    """RFC 1123 date for the Date header; one formatting per second, not per reply."""
    sec = int(now)
    cached = _date_cache[0]
    if cached[0] == sec:
        return cached[1]
    text = formatdate(sec, usegmt=True)
    _date_cache[0] = (sec, text)
    return text


def _result(status: int, reason: str, now: float, error: str | None = None,
            extra: list[tuple[str, str]] | None = None) -> RegisterResult:
    headers: list[tuple[str, str]] = []
    if extra:
        headers.extend(extra)
    if error:
        headers.append(("P-Registrar-Error", error))
    headers.append(("Date", _date(now)))
    return RegisterResult(status, reason, headers, REG_ERROR)


def _unquote(v: str | None) -> str | None:
    if v is not None and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


def _contact_value(b: Binding, now: float) -> str:
    left = int(b.expires - now + 0.5)
    parts = [f"<{b.contact}>;expires={max(0, left)}"]
    if b.q != 1.0:
        parts.append(f";q={b.q:.3f}".rstrip("0").rstrip("."))
    if b.instance is not None:
        parts.append(f';+sip.instance="{b.instance}"')
    if b.reg_id:
        parts.append(f";reg-id={b.reg_id}")
    return "".join(parts)


class Registrar:
    """REGISTER processing on top of a :class:`Location` table."""

    __slots__ = ("location", "settings")

    def __init__(self, location: Location, settings: RegistrarSettings | None = None) -> None:
        self.settings = RegistrarSettings() if settings is None else settings
        if self.settings.use_domain != location.use_domain:
            raise ValueError(
                f"registrar use_domain={self.settings.use_domain} but the location table has "
                f"use_domain={location.use_domain}; they must agree"
            )
        self.location = location

    # -- lookups -----------------------------------------------------------------------------------
    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Unexpired bindings of ``aor`` (key or URI text), q descending then most recent."""
        return self.location.lookup(aor, now)

    def registered(self, aor: str, now: float) -> bool:
        """Whether ``aor`` has at least one unexpired binding (Kamailio's registered())."""
        return bool(self.location.lookup(aor, now))

    def branches(self, aor: str, now: float) -> list[Branch]:
        """Forking targets for ``aor``: one :class:`Branch` per unexpired binding, in lookup order.

        With a Path, the request follows the Path as its Route set and ``dst_uri`` stays None
        (the first Path hop is the next hop; the edge proxy there knows the NAT binding). Without
        one, ``dst_uri`` is the binding's ``received`` address when it was saved."""
        out: list[Branch] = []
        for b in self.location.lookup(aor, now):
            dst: str | None = None
            if not b.path and b.received:
                try:
                    dst = received_to_uri(b.received)
                except ValueError:
                    log.warning("binding %s of %s has a bad received %r; ignored",
                                b.contact, b.aor, b.received)
            out.append(Branch(b.contact, dst, tuple(b.path), b.q, b.socket, b.cflags, b.instance))
        return out

    # -- REGISTER ----------------------------------------------------------------------------------
    def save(
        self,
        msg: SipMessage,
        now: float,
        *,
        received: str | None = None,
        socket: str | None = None,
        flags: int = 0,
        cflags: int = 0,
        aor: str | None = None,
    ) -> RegisterResult:
        """Process a REGISTER (see the module docstring) and say how to answer it.

        ``now`` is Unix wall-clock time. ``received`` is the request's source address
        ("proto:host:port") to store for NAT traversal, ``socket`` the local listener it came
        in on; ``flags`` / ``cflags`` are stored in the bindings (cflags come back as branch
        flags at lookup); ``aor`` overrides the To-header AoR."""
        st = self.settings
        # 1. the address-of-record
        if aor is None:
            to = msg.get("To")
            if to is None:
                return _result(400, "Bad Request", now, "To header not found")
            try:
                parsed = parse_uri(parse_name_addr(to).uri)
            except UnsupportedURIScheme:
                return _result(404, "Not Found", now, "AoR is not a SIP URI")
            except ValueError:
                return _result(400, "Bad Request", now, "Error while parsing AOR")
            if parsed.scheme != "sip" and parsed.scheme != "sips":
                return _result(404, "Not Found", now, "AoR is not a SIP URI")
            aor_of: SipURI | str = parsed  # the To URI, parsed already
        else:
            aor_of = aor
        try:
            key = aor_key(aor_of, st.use_domain) if isinstance(aor_of, SipURI) \
                else normalize_aor(aor_of, st.use_domain)
        except ValueError:
            return _result(400, "Bad Request", now, "No username in To URI")

        call_id = msg.call_id
        if not call_id:
            return _result(400, "Bad Request", now, "Call-ID header not found")
        try:
            cseq = msg.cseq_num
        except ValueError:
            return _result(400, "Bad Request", now, "CSeq header not found or invalid")

        expires_hdr: int | None = None
        ev = msg.get("Expires")
        if ev is not None:
            if not ev.isdigit() or not ev.isascii():
                return _result(400, "Bad Request", now, "Expires parse error")
            expires_hdr = min(int(ev), _MAX_DELTA)

        contact_lines = msg.get_all("Contact")
        existing = self.location.get(key)
        live = [b for b in existing if b.expires > now]
        # 2. fetch
        if not contact_lines:
            return self._ok(msg, key, live, now)
        if any("*" in line for line in contact_lines) and len(msg.values("Contact")) > 1 \
                and any(v.strip() == "*" for v in msg.values("Contact")):
            return _result(400, "Bad Request", now, "* used in contact and more than 1 contact")
        try:
            contacts = parse_contacts(contact_lines)
        except ValueError:
            return _result(400, "Bad Request", now, "Contact parse error")
        if not contacts:  # a Contact header with nothing in it
            return _result(400, "Bad Request", now, "Contact parse error")

        # 3. Contact: *
        if contacts == "*":
            if expires_hdr != 0:
                return _result(400, "Bad Request", now, "* used in contact and expires is not zero")
            for b in live:
                if b.call_id == call_id and cseq <= b.cseq:
                    return self._out_of_order(now, key, call_id)
            return self._commit(msg, key, [], existing, {}, now)

        # 4./5. one contact at a time, against the state the previous ones left
        state: dict[str, Binding] = {b.contact: b for b in live}
        fresh: set[str] = set()
        user_agent = msg.get("User-Agent") or ""
        path = msg.values("Path")
        for na in contacts:
            try:
                e = na.expires
                q = na.q
            except ValueError as exc:
                what = "expires" if "expires" in str(exc) else "q"
                return _result(400, "Bad Request", now, f"Invalid {what} param in contact")
            if e is None:
                e = st.default_expires if expires_hdr is None else expires_hdr
            elif e > _MAX_DELTA:
                e = _MAX_DELTA
            if e:
                if e < st.min_expires:
                    return _result(423, "Interval Too Brief", now,
                                   extra=[("Min-Expires", str(st.min_expires))])
                if st.max_expires and e > st.max_expires:
                    e = st.max_expires
            try:
                check_uri(na.uri)
            except UnsupportedURIScheme:
                pass  # RFC 3261 §10.2.1: any URI scheme may be registered
            except ValueError:
                return _result(400, "Bad Request", now, "Contact parse error")
            instance = _unquote(na.params.get("+sip.instance"))
            reg_id = 0
            rv = na.params.get("reg-id")
            if rv is not None:
                if not rv.isdigit() or not rv.isascii() or len(rv) > 10:
                    return _result(400, "Bad Request", now, "Invalid reg-id param in contact")
                reg_id = int(rv)
            old = self._match(state, na, instance, reg_id)
            if old is not None:
                if old.contact in fresh:
                    pass  # the same contact twice in one REGISTER: the last one wins
                elif old.call_id == call_id and cseq <= old.cseq:
                    return self._out_of_order(now, key, call_id)
                del state[old.contact]
                fresh.discard(old.contact)
            if e == 0:
                continue
            state[na.uri] = Binding(
                key, na.uri, now + e, q=q, call_id=call_id, cseq=cseq, received=received,
                path=path, user_agent=user_agent, socket=socket, flags=flags, cflags=cflags,
                instance=instance, reg_id=reg_id, last_modified=now,
            )
            fresh.add(na.uri)

        # 6. max_contacts
        if st.max_contacts and len(state) > st.max_contacts:
            return _result(503, "Too Many Registered Contacts", now,
                           "Too many registered contacts")
        upserts = [state[c] for c in fresh]
        # deleted: expired leftovers, removed bindings, and bindings whose contact changed
        deletes = [b for b in existing if state.get(b.contact) is None]
        return self._commit(msg, key, upserts, deletes, state, now)

    # -- internals ---------------------------------------------------------------------------------
    @staticmethod
    def _match(state: dict[str, Binding], na: NameAddr, instance: str | None,
               reg_id: int) -> Binding | None:
        if instance is not None:
            for b in state.values():
                if b.instance == instance and b.reg_id == reg_id:
                    return b
            return None
        same = state.get(na.uri)
        if same is not None:
            return same
        for b in state.values():
            if b.instance is None:
                try:
                    if uri_equal(b.contact, na.uri):
                        return b
                except ValueError:
                    continue
        return None

    @staticmethod
    def _out_of_order(now: float, key: str, call_id: str) -> RegisterResult:
        log.info("REGISTER for %s with a CSeq not above the stored one (Call-ID %s): rejected",
                 key, call_id)
        return _result(500, "Server Internal Error", now, "Invalid CSeq number")

    def _commit(self, msg: SipMessage, key: str, upserts: list[Binding], deletes: list[Binding],
                state: dict[str, Binding], now: float) -> RegisterResult:
        try:
            self.location.change(upserts, deletes)
        except StoreError as exc:
            log.error("REGISTER for %s (Call-ID %s): location store failed: %s",
                      key, msg.call_id, exc)
            return _result(500, "Server Internal Error", now, "usrloc update failed")
        # the stored list is already in forking order
        return self._ok(msg, key, self.location.lookup(key, now), now)

    def _ok(self, msg: SipMessage, key: str, bindings: list[Binding],
            now: float) -> RegisterResult:
        headers = [("Contact", _contact_value(b, now)) for b in bindings]
        if msg.has("Path"):
            supported = msg.values("Supported")
            if any(t.strip().lower() == "path" for t in supported):
                headers.extend(("Path", v) for v in msg.values("Path"))
        headers.append(("Date", _date(now)))
        return RegisterResult(200, "OK", headers, REG_OK, key, bindings)
