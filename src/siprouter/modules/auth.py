"""Digest authentication of requests (Kamailio's ``auth`` module), sans-IO.

RFC 2617 / RFC 7616 / RFC 8760: MD5, SHA-256 (and SHA-512-256 where the OpenSSL build has it),
their ``-sess`` variants, ``qop=auth`` / ``auth-int`` or no qop (RFC 2069 clients).

Nonces
------
A nonce is self-validating, so any worker process (or node sharing the ``secret``) can check
one it did not issue::

    nonce = base64url( issued:uint32 | random:8 bytes | HMAC-SHA256(secret, issued|random)[:16] )

A nonce older than ``nonce_expire`` seconds is *stale*: the credentials are refused with -4 and the
next challenge carries ``stale=true``, so the client retries with its password silently. A nonce
whose MAC does not match was not issued with our secret: -1, no reply.

Replay protection (``nonce_count``): every nonce that authenticated a request is remembered with
the highest ``nc`` seen; a request must bring a higher one (-6, nonce reused, otherwise). Without
qop there is no ``nc`` and a nonce is good for one request. The table is bounded
(``nc_array_size`` entries): when it is full the oldest entry goes and every nonce issued up to
that one is refused from then on as stale (the client just gets a fresh nonce) -- so a replay is
never accepted because its nonce was forgotten. The nc check is made after the password is
verified, so a forged request cannot burn a user's nonce.

Enumeration: an unknown user costs the same digest computation as a wrong password and the script
answers both the same way (``auth_challenge``: same status, same headers, a fresh nonce). Only the
return codes differ (-3 / -2), as in Kamailio, for the script's logs.

Errors: malformed credentials are answered ``400 Bad Credentials`` here (Kamailio's text) and
return -1; a credential store that fails (database down) makes this module answer
``500 Server Internal Error``, log it, and return -1. A challenge on a request that has been
answered already does nothing (returns -1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..sip import digest
from ..sip.build import random_bytes
from ..sip.headers import parse_name_addr
from ..sip.message import SipMessage
from ..sip.uri import parse_uri
from ..storage.location_store import StoreError
from .modparam import ModparamError, load_modparams

__all__ = [
    "AUTH_ERROR",
    "AUTH_INVALID_PASSWORD",
    "AUTH_NONCE_REUSED",
    "AUTH_NO_CREDENTIALS",
    "AUTH_OK",
    "AUTH_STALE_NONCE",
    "AUTH_USER_MISMATCH",
    "AUTH_USER_UNKNOWN",
    "Auth",
    "AuthSettings",
    "NonceTracker",
    "Secret",
]

log = logging.getLogger("siprouter.auth")

# Kamailio auth/api.h auth_cfg_result_t
AUTH_USER_MISMATCH = -8
AUTH_USERNAME_EXPIRED = -7
AUTH_NONCE_REUSED = -6
AUTH_NO_CREDENTIALS = -5
AUTH_STALE_NONCE = -4
AUTH_USER_UNKNOWN = -3
AUTH_INVALID_PASSWORD = -2
AUTH_ERROR = -1
AUTH_OK = 1

# challenge flags (Kamailio www_challenge)
FLAG_QOP_AUTH = 1
FLAG_QOP_AUTH_INT = 2
FLAG_NO_500 = 4
FLAG_STALE = 16
# pv_*_authenticate flags
FLAG_PASSWD_HA1 = 1

WWW = ("Authorization", "WWW-Authenticate", 401, "Unauthorized")
PROXY = ("Proxy-Authorization", "Proxy-Authenticate", 407, "Proxy Authentication Required")

def _err(module: str, key: str, message: str) -> ModparamError:
    return ModparamError(f"[modules.{module}] {key}: {message}")


def split_list(values: list[str] | None) -> list[str]:
    """``["SHA-256,MD5"]`` / ``["a", "b"]`` -> items, blanks dropped (Kamailio writes lists
    as comma-separated strings)."""
    return [x.strip() for v in values or () for x in v.split(",") if x.strip()]


_NC_RE = re.compile(r"[0-9a-fA-F]{8}\Z")
# seconds a nonce may claim to be issued in the future (clock skew between workers / nodes)
_SKEW = 5


@dataclass(slots=True)
class AuthSettings:
    # HMAC key of nonces; every worker and node that must accept another's nonces sets the same
    # one. None: a random key per process start (Kamailio `secret`, random by default)
    secret: str | None = None
    # seconds a nonce stays valid (Kamailio `nonce_expire`, 300 s)
    nonce_expire: int = 300
    # refuse replayed nonce counts (Kamailio `nonce_count`, off by default; siprouter: on)
    nonce_count: bool = True
    # nonces whose nc is tracked (Kamailio `nc_array_size` is 1 Mi one-byte cells; siprouter
    # keeps 64 Ki entries of a few dozen bytes)
    nc_array_size: int = 65536
    # qop offered when a challenge's flags ask for none: "", "auth" or "auth-int"
    # (Kamailio `qop`, "" by default; siprouter: "auth", so nonce counts protect replays)
    qop: str = "auth"
    # digest algorithm(s) offered, one challenge header each, preferred first
    # (Kamailio `algorithm`, MD5; RFC 8760 lists SHA-256 first when offering both)
    algorithm: list[str] | None = None
    # realm used when a script passes "" (default: the To host for REGISTER, else the From host)
    realm: str = ""
    # the challenge is sent statelessly even when a transaction exists
    # (Kamailio `force_stateless_reply`, 0)
    force_stateless_reply: bool = False

    @classmethod
    def from_table(cls, table: dict[str, Any] | None) -> AuthSettings:
        s = load_modparams(cls, "auth", table)
        if s.nonce_expire <= 0:
            raise _err("auth", "nonce_expire", f"expected seconds > 0, got {s.nonce_expire}")
        if s.nc_array_size < 16:
            raise _err("auth", "nc_array_size", f"expected >= 16, got {s.nc_array_size}")
        if s.qop not in ("", "auth", "auth-int"):
            raise _err("auth", "qop", f'expected "", "auth" or "auth-int", got "{s.qop}"')
        algs = split_list(s.algorithm) or ["MD5"]
        for a in algs:
            if a.upper() not in digest.ALGORITHMS:
                raise _err("auth", "algorithm", f'unsupported algorithm "{a}" '
                                    f"(supported: {', '.join(sorted(digest.ALGORITHMS))})")
        s.algorithm = algs
        if s.secret is not None and len(s.secret) < 8:
            raise _err("auth", "secret", "too short (8 characters at least)")
        return s

    @property
    def algorithms(self) -> list[str]:
        return self.algorithm or ["MD5"]


# The key used when no ``secret`` is configured: made once when this module is imported. The
# runtime imports it before forking its workers, so every worker of a node shares it and can
# check the nonces the others issued; it changes at each start (nonces then go stale: the UA
# simply answers the new challenge), as Kamailio's random secret does.
NODE_KEY = os.urandom(32)


class Secret:
    """Nonce generation and checking with one HMAC key (see the module docstring)."""

    __slots__ = ("_key",)

    def __init__(self, secret: str | bytes | None = None) -> None:
        if secret is None:
            self._key = NODE_KEY
        else:
            self._key = secret.encode() if isinstance(secret, str) else secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def new_nonce(self, now: float) -> str:
        payload = struct.pack(">I", int(now) & 0xFFFFFFFF) + random_bytes(8)
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def issued(self, nonce: str) -> int | None:
        """The issue time of a nonce made with this key; None if it was not (or is garbage)."""
        if len(nonce) != 38:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "==")
        except ValueError:
            return None
        if len(raw) != 28 or not hmac.compare_digest(raw[12:], self._mac(raw[:12])):
            return None
        # one spelling per nonce: the unused low bits of the last character must be zero
        if base64.urlsafe_b64encode(raw).decode().rstrip("=") != nonce:
            return None
        return int(struct.unpack(">I", raw[:4])[0])


class NonceTracker:
    """Highest nonce count seen per nonce, bounded (see the module docstring)."""

    __slots__ = ("_max", "_seen", "forgotten_upto")

    def __init__(self, max_entries: int = 65536) -> None:
        self._max = max_entries
        self._seen: dict[str, list[int]] = {}  # nonce -> [highest nc, issued]
        self.forgotten_upto = -1  # nonces issued at or before this time are refused

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, nonce: str, issued: int, nc: int, now: float, expire: int) -> int:
        """AUTH_OK and remember ``nc``, AUTH_NONCE_REUSED, or AUTH_STALE_NONCE (forgotten)."""
        seen = self._seen
        ent = seen.get(nonce)
        if ent is not None:
            if nc <= ent[0]:
                return AUTH_NONCE_REUSED
            ent[0] = nc
            return AUTH_OK
        if issued <= self.forgotten_upto:
            return AUTH_STALE_NONCE
        seen[nonce] = [nc, issued]
        if len(seen) > self._max:
            oldest = next(iter(seen))
            old_issued = seen.pop(oldest)[1]
            if old_issued > now - expire:  # still valid: it could be replayed, refuse it
                self.forgotten_upto = max(self.forgotten_upto, old_issued)
        return AUTH_OK


class Verdict:
    """What an authentication attempt found (``code`` is Kamailio's return code)."""

    __slots__ = ("code", "header", "index", "realm", "reply", "username")

    def __init__(self, code: int, reply: tuple[int, str] | None = None, username: str = "",
                 realm: str = "", header: str = "", index: int = -1) -> None:
        self.code = code
        self.reply = reply  # the answer this module owes (400 / 500), if any
        self.username = username
        self.realm = realm
        self.header = header
        self.index = index  # which line of ``header`` carried the credentials


# lookup(username, realm, algorithm) -> (secret, is_ha1) or None (no such user); StoreError if it
# cannot tell. ``is_ha1``: the secret is H(A1) for that algorithm, else the plain password.
Lookup = Callable[[str, str, str], "tuple[str, bool] | None"]


def _uri_host_user(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    try:
        u = parse_uri(parse_name_addr(value).uri)
    except ValueError:
        return None
    return (u.user or ""), u.host.lower()


def default_realm(msg: SipMessage, configured: str = "") -> str:
    if configured:
        return configured
    hu = _uri_host_user(msg.get("to") if msg.method == "REGISTER" else msg.get("from"))
    return hu[1] if hu else ""


class Auth:
    """Digest checks and challenges for one process (nonce key + nc table)."""

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self.settings = s = settings or AuthSettings.from_table(None)
        self.secret = Secret(s.secret)
        self.tracker = NonceTracker(s.nc_array_size)
        self._dummy_ha1 = os.urandom(16).hex()

    # -- verification ---------------------------------------------------------------------------
    def verify(
        self, msg: SipMessage, realm: str, hf: tuple[str, str, int, str], lookup: Lookup,
        now: float, method: str | None = None,
    ) -> Verdict:
        """Check the credentials of ``realm`` in ``hf``'s header (WWW or PROXY)."""
        realm = realm or default_realm(msg, self.settings.realm)
        hname = hf[0]
        lines = msg.get_all(hname)
        params: dict[str, str] | None = None
        index = -1
        for i, line in enumerate(lines):
            try:
                scheme, p = digest.parse_auth_header(line)
            except ValueError as exc:
                log.info("bad %s header, call-id=%s: %s", hname, msg.call_id, exc)
                return Verdict(AUTH_ERROR, (400, "Bad Credentials"))
            if scheme.lower() == "digest" and p.get("realm") == realm:
                params, index = p, i
                break
        if params is None:
            return Verdict(AUTH_NO_CREDENTIALS)
        username = params.get("username")
        nonce = params.get("nonce")
        qop = params.get("qop")
        nc_text = params.get("nc")
        algorithm = params.get("algorithm", "MD5")
        if (not username or nonce is None or "uri" not in params or "response" not in params
                or algorithm.upper() not in digest.ALGORITHMS
                or (qop is not None and (qop.lower() not in ("auth", "auth-int")
                                         or nc_text is None or not _NC_RE.match(nc_text)
                                         or not params.get("cnonce")))):
            log.info("incomplete %s credentials, call-id=%s", hname, msg.call_id)
            return Verdict(AUTH_ERROR, (400, "Bad Credentials"))
        issued = self.secret.issued(nonce)
        if issued is None:
            log.debug("nonce not ours, call-id=%s", msg.call_id)
            return Verdict(AUTH_ERROR, username=username, realm=realm)
        if issued > now + _SKEW or now - issued >= self.settings.nonce_expire:
            return Verdict(AUTH_STALE_NONCE, username=username, realm=realm)
        try:
            cred = lookup(username, realm, algorithm)
        except StoreError as exc:
            log.error("credentials of %s@%s unavailable, call-id=%s: %s",
                      username, realm, msg.call_id, exc)
            return Verdict(AUTH_ERROR, (500, "Server Internal Error"), username, realm)
        meth = method or msg.method
        if cred is None:
            # the same work as a real check (an HA1 computed first where the store would hand
            # a password rather than an HA1), so timing does not tell unknown users apart
            dummy = self._dummy_ha1
            hashes = getattr(lookup, "hashes", None)
            if hashes is not None and hashes(username, algorithm):
                try:
                    dummy = digest.ha1(username, realm, dummy, algorithm)
                except ValueError:
                    pass
            digest.verify_response(params, meth, dummy, msg.body)
            return Verdict(AUTH_USER_UNKNOWN, username=username, realm=realm)
        value, is_ha1 = cred
        try:
            ha1 = value if is_ha1 else digest.ha1(username, realm, value, algorithm)
        except ValueError:
            return Verdict(AUTH_ERROR, (400, "Bad Credentials"))
        if not digest.verify_response(params, meth, ha1, msg.body):
            return Verdict(AUTH_INVALID_PASSWORD, username=username, realm=realm)
        if self.settings.nonce_count:
            nc = int(nc_text, 16) if nc_text is not None else 1
            rc = self.tracker.check(nonce, issued, nc, now, self.settings.nonce_expire)
            if rc != AUTH_OK:
                return Verdict(rc, username=username, realm=realm)
        return Verdict(AUTH_OK, None, username, realm, hname, index)

    # -- challenges -----------------------------------------------------------------------------
    def challenge_headers(
        self, msg: SipMessage, realm: str, flags: int, now: float, hf: tuple[str, str, int, str],
        *, stale: bool = False, algorithms: list[str] | None = None,
    ) -> list[tuple[str, str]]:
        """The ``WWW-`` / ``Proxy-Authenticate`` headers of a challenge (one per algorithm)."""
        realm = realm or default_realm(msg, self.settings.realm)
        if flags & FLAG_QOP_AUTH:
            qop: str | None = "auth"
        elif flags & FLAG_QOP_AUTH_INT:
            qop = "auth-int"
        else:
            qop = self.settings.qop or None
        nonce = self.secret.new_nonce(now)
        stale = stale or bool(flags & FLAG_STALE)
        return [
            (hf[1], digest.format_challenge(realm, nonce, algorithm=alg, qop=qop, stale=stale))
            for alg in (algorithms or self.settings.algorithms)
        ]


# -- script context helpers (a scripting.api.Request) ---------------------------------------------
_STALE_VAR = "__auth_stale"
_OK_VAR = "__auth_ok"


def apply_verdict(req: Any, v: Verdict, flags: int = 0) -> int:
    """Send the reply a verdict owes, remember what a later challenge / consume needs."""
    if v.code in (AUTH_STALE_NONCE, AUTH_NONCE_REUSED):
        req.vars[_STALE_VAR] = True
    if v.reply is not None and not req.replied:
        req.reply(v.reply[0], v.reply[1])
    if v.code == AUTH_OK:
        req.vars[_OK_VAR] = (v.header, v.index)
        req.vars["auth.user"] = v.username
        req.vars["auth.realm"] = v.realm
    return v.code


def challenge(auth: Auth, req: Any, realm: str, flags: int, hf: tuple[str, str, int, str],
              algorithms: list[str] | None = None) -> int:
    """Answer 401 / 407 with a fresh challenge; 1 sent, -1 not (already answered / failed)."""
    if req.replied or not req.is_request:
        return -1
    now = req.core.wall_clock()
    try:
        headers = auth.challenge_headers(req.msg, realm, flags, now, hf,
                                         stale=bool(req.vars.pop(_STALE_VAR, False)),
                                         algorithms=algorithms)
    except ValueError as exc:
        log.error("cannot build a challenge, call-id=%s: %s", req.msg.call_id, exc)
        if not flags & FLAG_NO_500:
            req.reply(500, "Server Internal Error")
        return -1
    return 1 if req.reply(hf[2], hf[3], headers=headers) else -1


def consume_credentials(req: Any) -> int:
    """Remove the credentials header line that authenticated this request (1; -1 none)."""
    used = req.vars.get(_OK_VAR)
    if not used:
        return -1
    name, index = used
    msg: SipMessage = req.msg
    lines = msg.get_all(name)
    if not 0 <= index < len(lines):
        return -1
    msg.remove(name)
    for i, line in enumerate(lines):
        if i != index:
            msg.add(name, line)
    req.vars.pop(_OK_VAR, None)
    return 1


def has_credentials(msg: SipMessage, realm: str) -> bool:
    """An Authorization or Proxy-Authorization header for ``realm``?"""
    for name in ("authorization", "proxy-authorization"):
        for line in msg.get_all(name):
            try:
                scheme, p = digest.parse_auth_header(line)
            except ValueError:
                continue
            if scheme.lower() == "digest" and p.get("realm") == realm:
                return True
    return False


def user_matches(msg: SipMessage, username: str, realm: str, flags: int) -> bool:
    """auth_check's identity check (flags 1; 2 = skip for INVITE/BYE/PRACK/UPDATE/MESSAGE)."""
    if not flags & 1:
        return True
    m = msg.method
    if flags & 2 and m in ("INVITE", "BYE", "PRACK", "UPDATE", "MESSAGE"):
        return True
    realm = realm.lower()
    names = ["from", "to"] if m in ("REGISTER", "PUBLISH") else ["from"]
    for h in names:
        hu = _uri_host_user(msg.get(h))
        if hu is None or hu[0] != username or (realm and hu[1] != realm):
            return False
    if m == "PUBLISH":
        try:
            u = parse_uri(msg.ruri)
        except ValueError:
            return False
        if (u.user or "") != username or (realm and u.host.lower() != realm):
            return False
    return True
