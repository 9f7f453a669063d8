"""Digest authentication against the subscriber table (Kamailio's ``auth_db`` module).

``KSR.auth_db.auth_check(realm, table, flags)`` / ``www_authenticate`` / ``proxy_authenticate``
verify the credentials of a request with :class:`siprouter.modules.auth.Auth` and a
:class:`~siprouter.storage.credentials.CredentialStore`; ``KSR.auth`` (challenges,
``consume_credentials``, ``has_credentials``, ``pv_*`` variants) is declared here too, since both
tables share one per-process :class:`Auth` (nonce key and nonce-count table).

Which column is the secret (Kamailio's modparams):

- ``calculate_ha1 = false`` (default): ``password_column`` (default ``ha1``) holds HA1 as written
  by ``siprouter subscriber add``; ``password_column_2`` (``ha1b``) is used when the digest
  username is ``user@domain``. HA1 is MD5: a client answering with another algorithm is checked
  against the plain ``password`` column instead.
- ``calculate_ha1 = true``: ``password_column`` holds the plain password and HA1 is computed for
  the algorithm the client used (MD5 or SHA-256).

Nothing is cached: each authentication reads its row (a primary-key lookup), so a password change
applies at the next request. A database that cannot be read answers 500 and logs it; the next
request tries again (see :mod:`siprouter.storage.sqldb`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..storage.credentials import CredentialStore, Subscriber, open_credential_store
from ..storage.sqldb import check_identifier
from . import auth as authmod
from .auth import PROXY, WWW, Auth, AuthSettings, _err, split_list
from .exports import BOOL, INT, STR, Export, declare
from .modparam import load_modparams

__all__ = ["AuthDb", "AuthDbSettings", "auth_modules", "build_auth"]

log = logging.getLogger("siprouter.auth_db")

_COLUMNS = ("username", "domain", "password", "ha1", "ha1b")


@dataclass(slots=True)
class AuthDbSettings:
    # database of the subscriber table (Kamailio `db_url`; default: [database] url)
    db_url: str | None = None
    # password_column holds the plain password, HA1 is computed (Kamailio `calculate_ha1`, 0)
    calculate_ha1: bool = False
    # column with HA1, or the password when calculate_ha1 (Kamailio `password_column`, "ha1")
    password_column: str = "ha1"
    # HA1 of "user@domain" usernames (Kamailio `password_column_2`, "ha1b")
    password_column_2: str = "ha1b"
    # match the subscriber's domain with the realm too (Kamailio `use_domain`, 0)
    use_domain: bool = False
    # columns copied to $avp(<column>) after a successful check (Kamailio `load_credentials`)
    load_credentials: list[str] = field(default_factory=list)

    @classmethod
    def from_table(cls, table: dict[str, Any] | None) -> AuthDbSettings:
        s = load_modparams(cls, "auth_db", table)
        s.load_credentials = split_list(s.load_credentials)
        for key in ("password_column", "password_column_2"):
            v = getattr(s, key)
            if v not in ("password", "ha1", "ha1b"):
                raise _err("auth_db", key,
                           f'expected "password", "ha1" or "ha1b", got "{v}"')
        for col in s.load_credentials:
            if col not in _COLUMNS:
                raise _err("auth_db", "load_credentials",
                           f'unknown column "{col}" (columns: {", ".join(_COLUMNS)})')
        if s.calculate_ha1 and s.password_column != "password":
            raise _err("auth_db", "password_column",
                       'calculate_ha1 needs the plain password column "password"')
        return s


class AuthDb:
    """Authentication of requests from the subscriber table (see the module docstring)."""

    def __init__(self, auth: Auth, store: CredentialStore,
                 settings: AuthDbSettings | None = None) -> None:
        self.auth = auth
        self.store = store
        self.settings = settings or AuthDbSettings()

    def _lookup(self, table: str, row_out: list[Subscriber]) -> authmod.Lookup:
        s = self.settings

        def lookup(username: str, realm: str, algorithm: str) -> tuple[str, bool] | None:
            user, at, dom = username.partition("@")
            domain = (dom if at else realm) if s.use_domain else None
            sub = self.store.get(user, domain, table)
            if sub is None:
                return None
            row_out.append(sub)
            if s.calculate_ha1:
                return sub.password, False
            col = s.password_column_2 if at else s.password_column
            if col != "password" and algorithm.upper() not in ("MD5", "MD5-SESS") and sub.password:
                return sub.password, False  # the stored HA1 is MD5: compute this algorithm's
            value: str = getattr(sub, col)
            return value, col != "password"

        def hashes(username: str, algorithm: str) -> bool:
            """Whether a check for this user would compute an HA1 (see ``lookup``): what
            ``Auth.verify`` repeats for unknown users."""
            if s.calculate_ha1:
                return True
            col = s.password_column_2 if "@" in username else s.password_column
            return col == "password" or algorithm.upper() not in ("MD5", "MD5-SESS")

        lookup.hashes = hashes  # type: ignore[attr-defined]
        return lookup

    def authenticate(self, req: Any, realm: str, table: str, hf: tuple[str, str, int, str],
                     method: str | None = None) -> int:
        """www_authenticate / proxy_authenticate: Kamailio's codes, replies 400 / 500 owed."""
        if not req.is_request:
            return authmod.AUTH_ERROR
        try:
            check_identifier(table or "subscriber")
        except ValueError as exc:
            log.error("auth_db: %s", exc)
            return authmod.AUTH_ERROR
        rows: list[Subscriber] = []
        v = self.auth.verify(req.msg, realm, hf, self._lookup(table or "subscriber", rows),
                             req.core.wall_clock(), method)
        code = authmod.apply_verdict(req, v)
        if code == authmod.AUTH_OK and rows:
            for col in self.settings.load_credentials:
                req.vars[f"avp:{col}"] = getattr(rows[0], col)
        return code

    def auth_check(self, req: Any, realm: str, table: str, flags: int) -> int:
        if not req.is_request:
            return authmod.AUTH_ERROR
        hf = WWW if req.msg.method == "REGISTER" else PROXY
        rc = self.authenticate(req, realm, table, hf)
        if rc != authmod.AUTH_OK:
            return rc
        user = str(req.vars.get("auth.user", ""))
        user_realm = str(req.vars.get("auth.realm", ""))
        if not authmod.user_matches(req.msg, user.partition("@")[0], user_realm, flags):
            req.vars.pop("__auth_ok", None)
            return authmod.AUTH_USER_MISMATCH
        return rc

    def is_subscriber(self, uri: str, table: str, flags: int) -> int:
        from ..sip.uri import parse_uri

        try:
            u = parse_uri(uri)
            check_identifier(table or "subscriber")
        except ValueError:
            return -1
        try:
            sub = self.store.get(u.user or "", u.host if flags & 1 else None, table or "subscriber")
        except Exception as exc:  # StoreError
            log.error("is_subscriber: %s", exc)
            return -1
        return 1 if sub is not None else -1


# -- one Auth / AuthDb per core -------------------------------------------------------------------
def build_auth(tables: dict[str, Any], db_url: str) -> dict[str, Any]:
    """``{"auth": Auth, "auth_db": AuthDb}`` from ``[modules.auth]`` / ``[modules.auth_db]``
    (ModparamError names a bad setting); the subscriber table is in ``db_url`` unless
    ``[modules.auth_db] db_url`` says otherwise. Opening does not connect yet."""
    a = Auth(AuthSettings.from_table(tables.get("auth")))
    dbs = AuthDbSettings.from_table(tables.get("auth_db"))
    store = open_credential_store(dbs.db_url or db_url or "sqlite:///siprouter.sqlite")
    return {"auth": a, "auth_db": AuthDb(a, store, dbs)}


def auth_modules(core: Any) -> tuple[Auth, AuthDb]:
    """This core's ``core.modules["auth"]`` / ``["auth_db"]``; built at first use (from
    ``core.settings`` when the core has them, else defaults) when the runtime did not."""
    mods: dict[str, Any] | None = getattr(core, "modules", None)
    if mods is None:
        mods = {}
        core.modules = mods
    a = mods.get("auth")
    db = mods.get("auth_db")
    if a is None or db is None:
        settings = getattr(core, "settings", None)
        tables = getattr(settings, "modules", {}) or {}
        url = getattr(getattr(settings, "database", None), "url", None)
        built = build_auth(tables, url or "")
        a = mods.setdefault("auth", built["auth"])
        db = mods.setdefault("auth_db", built["auth_db"])
    return a, db


# -- KSR exports ----------------------------------------------------------------------------------
def _www_authenticate(msg: Any, realm: str, table: str) -> int:
    return auth_modules(msg.core)[1].authenticate(msg, str(realm), str(table), WWW)


def _www_authenticate_method(msg: Any, realm: str, table: str, method: str) -> int:
    return auth_modules(msg.core)[1].authenticate(msg, str(realm), str(table), WWW, str(method))


def _proxy_authenticate(msg: Any, realm: str, table: str) -> int:
    return auth_modules(msg.core)[1].authenticate(msg, str(realm), str(table), PROXY)


def _auth_check(msg: Any, realm: str, table: str, flags: int) -> int:
    return auth_modules(msg.core)[1].auth_check(msg, str(realm), str(table), int(flags))


def _is_subscriber(msg: Any, uri: str, table: str, flags: int) -> int:
    return auth_modules(msg.core)[1].is_subscriber(str(uri), str(table), int(flags))


def _challenge(hf: tuple[str, str, int, str] | None) -> Any:
    def fn(msg: Any, realm: str, flags: int) -> int:
        h = hf or (WWW if msg.is_request and msg.msg.method == "REGISTER" else PROXY)
        return authmod.challenge(auth_modules(msg.core)[0], msg, str(realm), int(flags), h)
    return fn


def _challenge_algs(hf: tuple[str, str, int, str] | None) -> Any:
    def fn(msg: Any, realm: str, flags: int, algorithms: str) -> int:
        h = hf or (WWW if msg.is_request and msg.msg.method == "REGISTER" else PROXY)
        algs = [a.strip() for a in str(algorithms).split(",") if a.strip()]
        return authmod.challenge(auth_modules(msg.core)[0], msg, str(realm), int(flags), h,
                                 algs or None)
    return fn


def _consume_credentials(msg: Any) -> int:
    return authmod.consume_credentials(msg) if msg.is_request else -1


def _has_credentials(msg: Any, realm: str) -> bool:
    return msg.is_request and authmod.has_credentials(msg.msg, str(realm))


def _pv_authenticate(hf: tuple[str, str, int, str] | None) -> Any:
    def fn(msg: Any, realm: str, passwd: str, flags: int) -> int:
        if not msg.is_request:
            return authmod.AUTH_ERROR
        h = hf or (WWW if msg.msg.method == "REGISTER" else PROXY)
        a = auth_modules(msg.core)[0]
        secret = (str(passwd), bool(int(flags) & authmod.FLAG_PASSWD_HA1))
        v = a.verify(msg.msg, str(realm), h, lambda _u, _r, _a: secret, msg.core.wall_clock())
        return authmod.apply_verdict(msg, v)
    return fn


def _pv_auth_check(msg: Any, realm: str, passwd: str, flags: int, checks: int) -> int:
    rc: int = _pv_authenticate(None)(msg, realm, passwd, flags)
    if rc == authmod.AUTH_OK and not authmod.user_matches(
            msg.msg, str(msg.vars.get("auth.user", "")), str(msg.vars.get("auth.realm", "")),
            int(checks)):
        return authmod.AUTH_USER_MISMATCH
    return rc


declare("auth_db", (
    Export("auth_check", _auth_check, (STR, STR, INT), INT,
           "Authenticate (REGISTER: Authorization, else Proxy-Authorization); flags 1 = the "
           "auth user must match From/To. 1 ok; -1 error, -2 wrong password, -3 unknown user, "
           "-4 stale nonce, -5 no credentials, -6 nonce reused, -8 user mismatch."),
    Export("www_authenticate", _www_authenticate, (STR, STR), INT,
           "Check Authorization credentials of realm against a subscriber table."),
    Export("www_authorize", _www_authenticate, (STR, STR), INT,
           "Alias of www_authenticate."),
    Export("www_authenticate_method", _www_authenticate_method, (STR, STR, STR), INT,
           "www_authenticate with the method given (instead of the request's)."),
    Export("proxy_authenticate", _proxy_authenticate, (STR, STR), INT,
           "Check Proxy-Authorization credentials of realm against a subscriber table."),
    Export("proxy_authorize", _proxy_authenticate, (STR, STR), INT,
           "Alias of proxy_authenticate."),
    Export("is_subscriber", _is_subscriber, (STR, STR, INT), INT,
           "1 if the URI's user (and domain with flags 1) is in the subscriber table."),
), doc="Digest authentication against the subscriber table (auth_db).")

declare("auth", (
    Export("auth_challenge", _challenge(None), (STR, INT), INT,
           "Challenge: 401 for REGISTER, 407 otherwise. flags 1 qop=auth, 2 qop=auth-int, "
           "4 no 500 on failure, 16 stale=true."),
    Export("auth_challenge_algorithms", _challenge_algs(None), (STR, INT, STR), INT,
           "auth_challenge with a comma-separated list of algorithms (one header each)."),
    Export("www_challenge", _challenge(WWW), (STR, INT), INT,
           "Answer 401 with a WWW-Authenticate challenge."),
    Export("proxy_challenge", _challenge(PROXY), (STR, INT), INT,
           "Answer 407 with a Proxy-Authenticate challenge."),
    Export("consume_credentials", _consume_credentials, (), INT,
           "Remove the credentials that authenticated the request."),
    Export("has_credentials", _has_credentials, (STR,), BOOL,
           "True if the request has (Proxy-)Authorization credentials for realm."),
    Export("pv_www_authenticate", _pv_authenticate(WWW), (STR, STR, INT), INT,
           "Check Authorization against the given password (flags 1: it is HA1)."),
    Export("pv_proxy_authenticate", _pv_authenticate(PROXY), (STR, STR, INT), INT,
           "Check Proxy-Authorization against the given password (flags 1: it is HA1)."),
    Export("pv_auth_check", _pv_auth_check, (STR, STR, INT, INT), INT,
           "pv_www/proxy_authenticate by method, then the From/To user check (checks 1)."),
), doc="Digest challenges and credential helpers (auth).")
